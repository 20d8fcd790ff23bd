"""HOYA's typed configuration: endpoints, the local stack and the Horovod cluster.

The configuration is read from ``conf/hoya.yaml`` and ``conf/cluster.yaml`` (or the
files named by ``HOYA_CONF`` and ``HOYA_CLUSTER_CONF``), then environment variables
override single endpoints so the same files serve a laptop and a real cluster:

=============================  ===============================================
variable                       overrides
=============================  ===============================================
``HOYA_HBASE_THRIFT_HOST``     ``hbase.thrift_host``
``HOYA_HBASE_THRIFT_PORT``     ``hbase.thrift_port``
``HOYA_HDFS_URI``              ``hdfs.uri``
``HOYA_WEBHDFS_URL``           ``hdfs.webhdfs_url``
``HOYA_SPARK_MASTER``          ``spark.master``
``HOYA_HOROVOD_HOSTS``         ``horovod.hosts`` as ``host:slots,host:slots``
``HOYA_AIRFLOW_HOME``          ``airflow.home``
``HOYA_STATE_DIR``             ``stack.state_dir``
``HOYA_PORT_OFFSET``           added to every local-stack port and to the
                               endpoints that point at 127.0.0.1 or localhost
=============================  ===============================================

Invalid values raise :class:`ConfigError` before any service or job starts. Its
message names the file or variable, the key, the bad value and what is allowed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONF = REPO_ROOT / "conf" / "hoya.yaml"
DEFAULT_CLUSTER_CONF = REPO_ROOT / "conf" / "cluster.yaml"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}

_SPARK_MASTER = re.compile(r"^(local(\[(\*|[1-9]\d*)(,\d+)?\])?|spark://.+|yarn|k8s://.+)$")


def _check_port(url: str) -> None:
    try:
        port = urlsplit(url).port
    except ValueError as err:
        raise ValueError(f"has an invalid port: {err}") from None
    if port is not None and not 1 <= port <= 65535:
        raise ValueError("has a port outside 1 to 65535")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key, value and fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class HBaseSettings(_Section):
    thrift_host: str = Field("127.0.0.1", description="a host name or IP address")
    thrift_port: int = Field(9090, ge=1, le=65535, description="a port from 1 to 65535")
    transport: Literal["buffered", "framed"] = Field(
        "buffered", description="'buffered' or 'framed', as the Thrift server runs"
    )
    protocol: Literal["binary", "compact"] = Field(
        "binary", description="'binary' or 'compact', as the Thrift server runs"
    )
    timeout_ms: int = Field(
        120_000, ge=1_000, description="socket timeout in milliseconds, at least 1000"
    )
    thrift2_port: int = Field(
        9091, ge=1, le=65535, description="the Thrift2 server's port (DDL), from 1 to 65535"
    )


class HdfsSettings(_Section):
    uri: str = Field(
        "hdfs://127.0.0.1:9000", description="a file system URI such as hdfs://namenode:8020"
    )
    webhdfs_url: str = Field(
        "http://127.0.0.1:9870", description="the NameNode's HTTP address, http://host:port"
    )

    @field_validator("uri")
    @classmethod
    def _check_uri(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "hdfs" or not parts.hostname:
            raise ValueError("must start with hdfs:// and name the NameNode host")
        _check_port(value)
        return value.rstrip("/")

    @field_validator("webhdfs_url")
    @classmethod
    def _check_webhdfs(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be http://host:port or https://host:port")
        _check_port(value)
        return value.rstrip("/")


class SparkSettings(_Section):
    master: str = Field(
        "local[2]", description="local, local[N], local[*], spark://..., yarn or k8s://..."
    )
    driver_memory: str = Field("2g", description="a JVM size such as 2g or 512m")
    conf: dict[str, str] = Field(
        default_factory=dict, description="extra Spark properties, name to string value"
    )

    @field_validator("master")
    @classmethod
    def _check_master(cls, value: str) -> str:
        if not _SPARK_MASTER.match(value):
            raise ValueError("is not a Spark master URL")
        return value

    @field_validator("driver_memory")
    @classmethod
    def _check_memory(cls, value: str) -> str:
        if not re.fullmatch(r"[1-9]\d*[kmgt]?", value.lower()):
            raise ValueError("is not a JVM memory size")
        return value


class AirflowSettings(_Section):
    home: str = Field(
        ".hoya/airflow", min_length=1,
        description="a folder; relative paths start at the repository root",
    )


class StackPorts(_Section):
    zookeeper: int = Field(2181, ge=1, le=65535)
    hbase_master: int = Field(16000, ge=1, le=65535)
    hbase_regionserver: int = Field(16020, ge=1, le=65535)
    hbase_thrift: int = Field(9090, ge=1, le=65535)
    hbase_thrift2: int = Field(9091, ge=1, le=65535)
    namenode: int = Field(9000, ge=1, le=65535)
    namenode_http: int = Field(9870, ge=1, le=65535)
    datanode: int = Field(9866, ge=1, le=65535)
    datanode_http: int = Field(9864, ge=1, le=65535)
    datanode_ipc: int = Field(9867, ge=1, le=65535)


class StackSettings(_Section):
    state_dir: str = Field(
        ".hoya/state", min_length=1,
        description="a folder; relative paths start at the repository root",
    )
    start_timeout_s: int = Field(
        180, ge=10, le=3600, description="seconds from 10 to 3600"
    )
    hbase_heap: str = Field("1g", description="a JVM size such as 1g")
    hdfs_heap: str = Field("512m", description="a JVM size such as 512m")
    ports: StackPorts = Field(default_factory=StackPorts)


class HorovodHost(_Section):
    host: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="a host name reachable over SSH, or localhost",
    )
    slots: int = Field(ge=1, le=64, description="ranks on this host, from 1 to 64")
    gpus: int = Field(0, ge=0, le=64, description="GPUs on this host, 0 for CPU ranks")


class HorovodSettings(_Section):
    controller: Literal["gloo", "mpi"] = Field("gloo", description="'gloo' or 'mpi'")
    hosts: list[HorovodHost] = Field(
        default_factory=lambda: [HorovodHost(host="localhost", slots=2)],
        min_length=1,
        description="at least one {host, slots, gpus} entry",
    )
    network_interface: str | None = Field(
        None, description="a network interface name such as eth0, or null"
    )
    ssh_port: int | None = Field(None, ge=1, le=65535, description="a port, or null")

    @field_validator("hosts")
    @classmethod
    def _check_unique_hosts(cls, hosts: list[HorovodHost]) -> list[HorovodHost]:
        names = [h.host for h in hosts]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"lists {repeated} more than once; give each host once with its slots")
        return hosts

    @property
    def num_ranks(self) -> int:
        return sum(h.slots for h in self.hosts)

    @property
    def num_gpus(self) -> int:
        return sum(h.gpus for h in self.hosts)


class HoyaConfig(_Section):
    hbase: HBaseSettings = Field(default_factory=HBaseSettings)
    hdfs: HdfsSettings = Field(default_factory=HdfsSettings)
    spark: SparkSettings = Field(default_factory=SparkSettings)
    airflow: AirflowSettings = Field(default_factory=AirflowSettings)
    stack: StackSettings = Field(default_factory=StackSettings)
    horovod: HorovodSettings = Field(default_factory=HorovodSettings)

    def resolve_path(self, path: str) -> Path:
        """Return ``path`` as absolute, relative paths taken from the repository root."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else REPO_ROOT / candidate

    @property
    def state_dir(self) -> Path:
        return self.resolve_path(self.stack.state_dir)

    @property
    def airflow_home(self) -> Path:
        return self.resolve_path(self.airflow.home)


# Environment variable -> the dotted key it overrides.
ENV_OVERRIDES: dict[str, str] = {
    "HOYA_HBASE_THRIFT_HOST": "hbase.thrift_host",
    "HOYA_HBASE_THRIFT_PORT": "hbase.thrift_port",
    "HOYA_HDFS_URI": "hdfs.uri",
    "HOYA_WEBHDFS_URL": "hdfs.webhdfs_url",
    "HOYA_SPARK_MASTER": "spark.master",
    "HOYA_HOROVOD_HOSTS": "horovod.hosts",
    "HOYA_AIRFLOW_HOME": "airflow.home",
    "HOYA_STATE_DIR": "stack.state_dir",
}


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: file not found; create it or set HOYA_CONF") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot be read as a UTF-8 YAML file: {err}") from err
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def _parse_hosts(text: str) -> list[dict[str, Any]]:
    """Parse ``host:slots[,host:slots]`` into host entries; a bare host gets 1 slot."""
    hosts = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, slots = item.partition(":")
        hosts.append({"host": name, "slots": slots or 1})
    return hosts


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    section, _, name = key.partition(".")
    target = data.setdefault(section, {})
    if not isinstance(target, dict):
        raise ConfigError(f"key '{section}' must be a mapping, not {target!r}")
    target[name] = value


def _shift_endpoint(url: str, offset: int) -> str:
    parts = urlsplit(url)
    if parts.hostname not in LOCAL_HOSTS or parts.port is None:
        return url
    netloc = f"{parts.hostname}:{parts.port + offset}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _apply_port_offset(config: HoyaConfig, offset: int) -> None:
    ports = config.stack.ports
    for name in StackPorts.model_fields:
        setattr(ports, name, getattr(ports, name) + offset)
    if config.hbase.thrift_host in LOCAL_HOSTS:
        config.hbase.thrift_port += offset
        config.hbase.thrift2_port += offset
    config.hdfs.uri = _shift_endpoint(config.hdfs.uri, offset)
    config.hdfs.webhdfs_url = _shift_endpoint(config.hdfs.webhdfs_url, offset)


def _describe_error(
    error: dict[str, Any], model: type[BaseModel], origins: dict[str, str]
) -> str:
    key = ".".join(str(part) for part in error["loc"])
    parts = key.split(".")
    # Use the most specific origin: an environment variable for the key, else the section's file.
    origin = next(
        (origins[".".join(parts[:n])] for n in range(len(parts), 0, -1)
         if ".".join(parts[:n]) in origins),
        "",
    )
    where = f"{origin}: " if origin else ""
    value = error.get("input")
    message = error["msg"]
    allowed = _allowed_text(model, error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{where}unknown key '{key}'; allowed keys here: {allowed}"
    hint = f"; allowed: {allowed}" if allowed else ""
    return f"{where}{key} = {value!r} is invalid: {message}{hint}"


def _allowed_text(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """Return the description of the field at ``loc``, or the sibling keys for an extra key."""
    current: Any = model
    for index, part in enumerate(loc):
        if isinstance(part, int):  # a list index: the element model is already current
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return ""
        field = current.model_fields.get(str(part))
        if field is None:
            return ", ".join(current.model_fields)
        annotation = field.annotation
        if index == len(loc) - 1:
            return field.description or ""
        if getattr(annotation, "__origin__", None) is list:
            annotation = annotation.__args__[0]
            current = annotation
            continue
        current = annotation
    return ""


def load_config(
    path: Path | str | None = None,
    cluster_path: Path | str | None = None,
    environ: dict[str, str] | None = None,
) -> HoyaConfig:
    """Load and validate the HOYA configuration, applying environment overrides.

    Raises ConfigError with one line per invalid key.
    """
    env = os.environ if environ is None else environ
    conf_path = Path(path or env.get("HOYA_CONF") or DEFAULT_CONF)
    cluster = Path(cluster_path or env.get("HOYA_CLUSTER_CONF") or DEFAULT_CLUSTER_CONF)

    data = _read_yaml(conf_path)
    origins = {section: str(conf_path) for section in data}
    if not cluster.exists() and (cluster_path or env.get("HOYA_CLUSTER_CONF")):
        raise ConfigError(f"{cluster}: file not found; fix HOYA_CLUSTER_CONF or create it")
    if cluster.exists():
        cluster_data = _read_yaml(cluster)
        extra = set(cluster_data) - {"horovod"}
        if extra:
            raise ConfigError(
                f"{cluster}: unknown section(s) {sorted(extra)}; this file contains only 'horovod'"
            )
        data["horovod"] = cluster_data.get("horovod", {})
        origins["horovod"] = str(cluster)

    for variable, key in ENV_OVERRIDES.items():
        if variable in env:
            raw = env[variable]
            value: Any = _parse_hosts(raw) if key == "horovod.hosts" else raw
            _set_dotted(data, key, value)
            origins[key] = variable

    try:
        config = HoyaConfig.model_validate(data)
    except ValidationError as err:
        lines = [_describe_error(e, HoyaConfig, origins) for e in err.errors()]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None

    offset_text = env.get("HOYA_PORT_OFFSET", "0")
    if not re.fullmatch(r"\d{1,4}", offset_text):
        raise ConfigError(
            f"HOYA_PORT_OFFSET = {offset_text!r} is invalid; allowed: an integer from 0 to 9999"
        )
    if int(offset_text):
        try:
            _apply_port_offset(config, int(offset_text))
        except ValidationError as err:
            raise ConfigError(
                f"HOYA_PORT_OFFSET = {offset_text!r} moves a port past 65535 "
                f"({err.errors()[0]['msg']}); use a smaller offset"
            ) from None
    return config


def dump_config(config: HoyaConfig) -> str:
    """Return the effective configuration as YAML."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


__all__ = [
    "ConfigError",
    "HoyaConfig",
    "HorovodHost",
    "dump_config",
    "load_config",
]
