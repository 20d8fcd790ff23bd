"""The embedded local stack: HDFS (NameNode, DataNode) and standalone HBase with Thrift.

Every service is a JVM started from the jars that ``stack/pom.xml`` resolves, bound to
127.0.0.1, with its configuration rendered from ``stack/templates`` into the state
folder. The state folder contains data, logs and pid files, and survives restarts:

    <state_dir>/conf/       rendered XML, log4j and empty web-app folders
    <state_dir>/data/       HDFS blocks and metadata, HBase root, ZooKeeper
    <state_dir>/logs/       one log per service
    <state_dir>/run/        one pid file per service
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Callable

from pipelines.config import REPO_ROOT, HoyaConfig

log = logging.getLogger(__name__)

BIND_HOST = "127.0.0.1"
TEMPLATES = REPO_ROOT / "stack" / "templates"
LOG_TAIL_LINES = 30
STOP_TIMEOUT_S = 30


class StackError(RuntimeError):
    """A local service failed to start, stop or become healthy."""


@dataclass(frozen=True)
class Service:
    """One JVM of the local stack."""

    name: str
    main_class: str
    args: tuple[str, ...]
    heap: str
    ports: tuple[int, ...]
    health: Callable[[HoyaConfig], bool]


def _port_open(port: int, host: str = BIND_HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _http_json(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return json.loads(response.read().decode("utf-8"))
    except (OSError, urllib.error.URLError, ValueError):
        return None


def _namenode_healthy(config: HoyaConfig) -> bool:
    """Return True when WebHDFS responds and the NameNode has left safe mode."""
    ports = config.stack.ports
    base = f"http://{BIND_HOST}:{ports.namenode_http}"
    if _http_json(f"{base}/webhdfs/v1/?op=GETFILESTATUS&user.name=hoya") is None:
        return False
    info = _http_json(f"{base}/jmx?qry=Hadoop:service=NameNode,name=NameNodeInfo")
    beans = (info or {}).get("beans") or [{}]
    return beans[0].get("Safemode", "") == ""


def _datanode_healthy(config: HoyaConfig) -> bool:
    """Return True when the NameNode counts at least one live DataNode."""
    ports = config.stack.ports
    url = (
        f"http://{BIND_HOST}:{ports.namenode_http}"
        "/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState"
    )
    beans = (_http_json(url) or {}).get("beans") or [{}]
    return int(beans[0].get("NumLiveDataNodes", 0)) >= 1


def _hbase_healthy(config: HoyaConfig) -> bool:
    ports = config.stack.ports
    return _port_open(ports.zookeeper) and _port_open(ports.hbase_regionserver)


def _thrift_healthy(config: HoyaConfig) -> bool:
    """Return True when a Thrift client can list tables, which needs an active master."""
    if not _port_open(config.stack.ports.hbase_thrift):
        return False
    import happybase  # imported here: only the job environment has it

    try:
        connection = happybase.Connection(
            BIND_HOST, config.stack.ports.hbase_thrift, timeout=5000, autoconnect=True
        )
        try:
            connection.tables()
        finally:
            connection.close()
        return True
    except Exception:  # noqa: BLE001 - any Thrift or socket failure means not ready yet
        return False


def services(config: HoyaConfig) -> list[Service]:
    """Return the local services in start order."""
    ports = config.stack.ports
    stack = config.stack
    return [
        Service(
            "namenode",
            "org.apache.hadoop.hdfs.server.namenode.NameNode",
            (),
            stack.hdfs_heap,
            (ports.namenode, ports.namenode_http),
            _namenode_healthy,
        ),
        Service(
            "datanode",
            "org.apache.hadoop.hdfs.server.datanode.DataNode",
            (),
            stack.hdfs_heap,
            (ports.datanode, ports.datanode_http, ports.datanode_ipc),
            _datanode_healthy,
        ),
        Service(
            "hbase",
            "org.apache.hadoop.hbase.master.HMaster",
            ("start",),
            stack.hbase_heap,
            (ports.zookeeper, ports.hbase_master, ports.hbase_regionserver),
            _hbase_healthy,
        ),
        Service(
            "thrift",
            "org.apache.hadoop.hbase.thrift.ThriftServer",
            ("-p", str(ports.hbase_thrift), "--bind", BIND_HOST, "--infoport", "-1", "start"),
            "512m",
            (ports.hbase_thrift,),
            _thrift_healthy,
        ),
        # The Thrift2 API adds what Thrift1 lacks: namespaces and pre-split tables.
        Service(
            "thrift2",
            "org.apache.hadoop.hbase.thrift2.ThriftServer",
            ("-p", str(ports.hbase_thrift2), "--bind", BIND_HOST, "--infoport", "-1", "start"),
            "256m",
            (ports.hbase_thrift2,),
            lambda config: _port_open(config.stack.ports.hbase_thrift2),
        ),
    ]


class LocalStack:
    """Start, stop and report the local services described by a HoyaConfig."""

    def __init__(self, config: HoyaConfig, jars_dir: Path | None = None):
        self.config = config
        self.state = config.state_dir
        self.jars = jars_dir or Path(os.environ.get("HOYA_JARS", REPO_ROOT / ".hoya" / "jars"))
        self.conf_dir = self.state / "conf"
        self.data_dir = self.state / "data"
        self.log_dir = self.state / "logs"
        self.run_dir = self.state / "run"

    # Paths and process bookkeeping.

    def log_path(self, service: Service) -> Path:
        return self.log_dir / f"{service.name}.log"

    def _pid_path(self, service: Service) -> Path:
        return self.run_dir / f"{service.name}.pid"

    def pid(self, service: Service) -> int | None:
        """Return the pid of the running service, or None when it is not running."""
        try:
            pid = int(self._pid_path(service).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        # A reused pid belongs to another program: check the main class is ours.
        return pid if service.main_class.encode() in cmdline else None

    # Configuration.

    def render_config(self) -> None:
        """Write the XML, log4j and web-app folders the services read at start."""
        ports = self.config.stack.ports
        values = {
            "bind_host": BIND_HOST,
            "data_dir": str(self.data_dir),
            **{f"{name}_port": str(port) for name, port in ports.model_dump().items()},
        }
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        for name in ("hbase-site.xml", "core-site.xml", "hdfs-site.xml"):
            text = Template((TEMPLATES / name).read_text()).substitute(values)
            (self.conf_dir / name).write_text(text)
        shutil.copy(TEMPLATES / "log4j.properties", self.conf_dir / "log4j.properties")

        # Hadoop's HTTP servers look up webapps/<name> on the classpath. The Maven jars do
        # not ship those folders (the release tarball does); empty ones are enough for
        # WebHDFS and JMX, which are registered in code.
        for app in ("hdfs", "datanode", "static"):
            (self.conf_dir / "webapps" / app / "WEB-INF").mkdir(parents=True, exist_ok=True)

    def _java_command(self, service: Service) -> list[str]:
        if not (self.jars / ".complete").exists() and not any(self.jars.glob("*.jar")):
            raise StackError(
                f"no jars in {self.jars}; run bin/bootstrap (it resolves stack/pom.xml)"
            )
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else "java"
        options = [
            line.strip()
            for line in (TEMPLATES / "jvm.options").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        return [
            java,
            f"-Xmx{service.heap}",
            *options,
            f"-Dlog4j.configuration=file:{self.conf_dir / 'log4j.properties'}",
            f"-Dhadoop.log.dir={self.log_dir}",
            "-cp",
            f"{self.conf_dir}:{self.jars}/*",
            service.main_class,
            *service.args,
        ]

    def _format_namenode_once(self) -> None:
        if (self.data_dir / "hdfs" / "name" / "current").exists():
            return
        log.info("formatting the NameNode in %s", self.data_dir / "hdfs" / "name")
        namenode = services(self.config)[0]
        command = self._java_command(namenode) + ["-format", "-nonInteractive", "-force"]
        format_log = self.log_dir / "namenode-format.log"
        with format_log.open("w") as out:
            result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
        if result.returncode != 0:
            raise StackError(self._failure_text("NameNode format failed", format_log))

    # Start, stop, status.

    def _ports_path(self) -> Path:
        return self.run_dir / "ports.json"

    def _configured_ports(self) -> dict[str, int]:
        return self.config.stack.ports.model_dump()

    def running_ports(self) -> dict[str, int] | None:
        """Return the ports the running stack was started with, or None if unknown."""
        try:
            return json.loads(self._ports_path().read_text())
        except (FileNotFoundError, ValueError):
            return None

    def _check_same_ports(self) -> None:
        """Raise StackError when services run with other ports than the configuration's.

        A state folder serves one stack; starting it again with another HOYA_PORT_OFFSET
        would mix two stacks' services.
        """
        running = [service.name for service in services(self.config) if self.pid(service)]
        recorded = self.running_ports()
        if running and recorded is not None and recorded != self._configured_ports():
            raise StackError(
                f"the stack in {self.state} runs with other ports ({recorded}) than the "
                f"configuration ({self._configured_ports()}); use the HOYA_PORT_OFFSET it was "
                "started with, or stop it first with bin/hoya stack down"
            )

    def up(self) -> None:
        """Start every service that is not running and wait until each is healthy."""
        for folder in (self.data_dir, self.log_dir, self.run_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._check_same_ports()
        if not any(self.pid(service) for service in services(self.config)):
            self._ports_path().write_text(json.dumps(self._configured_ports()))
        self.render_config()
        self._format_namenode_once()
        for service in services(self.config):
            self._start(service)
        self._ports_path().write_text(json.dumps(self._configured_ports()))

    def _start(self, service: Service) -> None:
        process = None
        if self.pid(service) is not None:
            log.info("%s is already running (pid %s)", service.name, self.pid(service))
        else:
            busy = [port for port in service.ports if _port_open(port)]
            if busy:
                raise StackError(
                    f"cannot start {service.name}: port(s) {busy} on {BIND_HOST} are in use "
                    "by another process; stop it, or set HOYA_PORT_OFFSET to move the stack"
                )
            log_path = self.log_path(service)
            with log_path.open("a") as out:
                process = subprocess.Popen(
                    self._java_command(service),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=self.state,
                    start_new_session=True,
                )
            self._pid_path(service).write_text(str(process.pid))
            log.info("started %s (pid %s), log %s", service.name, process.pid, log_path)
        self._wait_healthy(service, process)

    def _wait_healthy(self, service: Service, process: subprocess.Popen | None) -> None:
        """Wait until the service is healthy; raise StackError if it exits or times out."""
        deadline = time.monotonic() + self.config.stack.start_timeout_s
        while time.monotonic() < deadline:
            if service.health(self.config):
                log.info("%s is healthy on port(s) %s", service.name, list(service.ports))
                return
            # A process started here is watched through its handle: right after the start,
            # the java launcher may re-exec itself and briefly show another command line.
            exited = process.poll() is not None if process else self.pid(service) is None
            if exited:
                raise StackError(self._failure_text(f"{service.name} exited", self.log_path(service)))
            time.sleep(1.0)
        raise StackError(
            self._failure_text(
                f"{service.name} did not become healthy within "
                f"{self.config.stack.start_timeout_s} s (stack.start_timeout_s)",
                self.log_path(service),
            )
        )

    @staticmethod
    def _failure_text(summary: str, log_path: Path) -> str:
        try:
            lines = log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        except FileNotFoundError:
            lines = ["(no log written)"]
        tail = "\n".join(f"    {line}" for line in lines)
        return f"{summary}; last {len(lines)} lines of {log_path}:\n{tail}"

    def down(self) -> None:
        """Stop the services in reverse start order: SIGTERM, then SIGKILL after a timeout."""
        for service in reversed(services(self.config)):
            pid = self.pid(service)
            if pid is None:
                self._pid_path(service).unlink(missing_ok=True)
                continue
            log.info("stopping %s (pid %s)", service.name, pid)
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while self.pid(service) is not None and time.monotonic() < deadline:
                time.sleep(0.5)
            if self.pid(service) is not None:
                log.warning("%s ignored SIGTERM for %s s; killing it", service.name, STOP_TIMEOUT_S)
                os.killpg(pid, signal.SIGKILL)
            self._pid_path(service).unlink(missing_ok=True)

    def status(self) -> list[dict[str, object]]:
        """Return one row per service: name, state, pid, ports and log path."""
        rows = []
        recorded = self.running_ports()
        other_ports = recorded is not None and recorded != self._configured_ports()
        for service in services(self.config):
            pid = self.pid(service)
            if pid is None:
                state = "stopped"
            elif other_ports:
                state = "other-ports"  # started with another HOYA_PORT_OFFSET
            else:
                state = "healthy" if service.health(self.config) else "unhealthy"
            rows.append(
                {
                    "service": service.name,
                    "state": state,
                    "pid": pid,
                    "ports": list(service.ports),
                    "log": str(self.log_path(service)),
                }
            )
        return rows
