"""Configuration loading, overrides and the messages for invalid values."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import ConfigError, load_config


def write(tmp_path: Path, text: str, name: str = "hoya.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None, cluster: str | None = None):
    cluster_path = write(tmp_path, cluster or "{}", "cluster.yaml")
    return load_config(write(tmp_path, text), cluster_path, environ=env or {})


def test_shipped_config_loads():
    config = load_config(environ={})
    assert config.hbase.thrift_port == 9090
    assert config.hdfs.uri == "hdfs://127.0.0.1:9000"
    assert config.spark.master == "local[2]"
    assert [(h.host, h.slots, h.gpus) for h in config.horovod.hosts] == [("localhost", 2, 0)]
    assert config.horovod.num_ranks == 2


def test_env_overrides_every_endpoint(tmp_path):
    env = {
        "HOYA_HBASE_THRIFT_HOST": "hbase-thrift.prod",
        "HOYA_HBASE_THRIFT_PORT": "19090",
        "HOYA_HDFS_URI": "hdfs://nn.prod:8020",
        "HOYA_WEBHDFS_URL": "https://nn.prod:9871",
        "HOYA_SPARK_MASTER": "yarn",
        "HOYA_HOROVOD_HOSTS": "gpu-1:4,gpu-2:8",
        "HOYA_AIRFLOW_HOME": "/srv/airflow",
    }
    config = load(tmp_path, "{}", env)
    assert config.hbase.thrift_host == "hbase-thrift.prod"
    assert config.hbase.thrift_port == 19090
    assert config.hdfs.uri == "hdfs://nn.prod:8020"
    assert config.hdfs.webhdfs_url == "https://nn.prod:9871"
    assert config.spark.master == "yarn"
    assert [(h.host, h.slots) for h in config.horovod.hosts] == [("gpu-1", 4), ("gpu-2", 8)]
    assert config.horovod.num_ranks == 12
    assert str(config.airflow_home) == "/srv/airflow"


def test_port_offset_moves_local_endpoints_only(tmp_path):
    config = load(tmp_path, "{}", {"HOYA_PORT_OFFSET": "100"})
    assert config.stack.ports.hbase_thrift == 9190
    assert config.stack.ports.zookeeper == 2281
    assert config.hbase.thrift_port == 9190
    assert config.hdfs.uri == "hdfs://127.0.0.1:9100"
    assert config.hdfs.webhdfs_url == "http://127.0.0.1:9970"

    remote = load(tmp_path, "hbase: {thrift_host: hb.prod}\nhdfs: {uri: 'hdfs://nn:8020'}\n",
                  {"HOYA_PORT_OFFSET": "100"})
    assert remote.hbase.thrift_port == 9090
    assert remote.hdfs.uri == "hdfs://nn:8020"


def test_cluster_file_sets_gpu_hosts(tmp_path):
    cluster = "horovod:\n  hosts:\n    - {host: g1, slots: 4, gpus: 4}\n    - {host: g2, slots: 2, gpus: 2}\n"
    config = load(tmp_path, "{}", cluster=cluster)
    assert config.horovod.num_gpus == 6
    assert config.horovod.num_ranks == 6


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        (
            "hbase: {thrift_port: 70000}",
            {},
            "hbase.thrift_port = 70000 is invalid: Input should be less than or equal to 65535;"
            " allowed: a port from 1 to 65535",
        ),
        (
            "{}",
            {"HOYA_HBASE_THRIFT_PORT": "abc"},
            "HOYA_HBASE_THRIFT_PORT: hbase.thrift_port = 'abc' is invalid",
        ),
        (
            "hdfs: {uri: 's3://bucket/x'}",
            {},
            "hdfs.uri = 's3://bucket/x' is invalid: Value error, must start with hdfs:// and name"
            " the NameNode host; allowed: a file system URI such as hdfs://namenode:8020",
        ),
        (
            "spark: {master: 'local[0]'}",
            {},
            "spark.master = 'local[0]' is invalid: Value error, is not a Spark master URL;"
            " allowed: local, local[N], local[*], spark://..., yarn or k8s://...",
        ),
        (
            "hbase: {transport: http}",
            {},
            "hbase.transport = 'http' is invalid: Input should be 'buffered' or 'framed'",
        ),
        (
            "hbase: {thrift_prot: 9090}",
            {},
            "unknown key 'hbase.thrift_prot'; allowed keys here: thrift_host, thrift_port,"
            " transport, protocol, timeout_ms",
        ),
        (
            "{}",
            {"HOYA_HOROVOD_HOSTS": "gpu-1:0"},
            "HOYA_HOROVOD_HOSTS: horovod.hosts.0.slots = '0' is invalid: Input should be greater"
            " than or equal to 1; allowed: ranks on this host, from 1 to 64",
        ),
        ("{}", {"HOYA_PORT_OFFSET": "-5"}, "HOYA_PORT_OFFSET = '-5' is invalid"),
        (
            "{}",
            {"HOYA_PORT_OFFSET": "9999", "HOYA_HBASE_THRIFT_PORT": "60000"},
            "HOYA_PORT_OFFSET = '9999' moves a port past 65535",
        ),
        ("{}", {"HOYA_HDFS_URI": "hdfs://127.0.0.1:abc"}, "has an invalid port"),
        ("{}", {"HOYA_HOROVOD_HOSTS": ":3"}, "horovod.hosts.0.host = '' is invalid"),
        ("{}", {"HOYA_HOROVOD_HOSTS": "a:1,a:1"}, "lists ['a'] more than once"),
        ("{}", {"HOYA_STATE_DIR": ""}, "stack.state_dir = '' is invalid"),
        (
            "hbase: {thrift_port: abc}",
            {},
            "hoya.yaml: hbase.thrift_port = 'abc' is invalid",
        ),
    ],
)
def test_invalid_values_are_rejected(tmp_path, text, env, expected):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, env)
    assert expected in str(caught.value)


def test_invalid_yaml_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"hoya.yaml: not valid YAML"):
        load(tmp_path, "hbase: [unclosed")


def test_missing_cluster_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="cluster.yaml: file not found; fix HOYA_CLUSTER_CONF"):
        load_config(write(tmp_path, "{}"), tmp_path / "cluster.yaml", environ={})


def test_folder_as_config_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read as a UTF-8 YAML file"):
        load_config(tmp_path, environ={})


def test_missing_file_names_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="file not found; create it or set HOYA_CONF"):
        load_config(tmp_path / "absent.yaml", tmp_path / "none.yaml", environ={})


def test_cli_rejects_bad_config_before_starting(tmp_path):
    from click.testing import CliRunner

    from pipelines.cli import cli

    bad = write(tmp_path, "spark: {master: nowhere}")
    result = CliRunner().invoke(cli, ["--conf", str(bad), "stack", "up"], obj={})
    assert result.exit_code == 2
    assert "spark.master = 'nowhere' is invalid" in result.output
