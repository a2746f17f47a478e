#!/usr/bin/env python3
"""A real single-node Apache Kafka (KRaft) for local runs and tests, without Docker.

The broker's jars come from Maven Central (through `mvn`, see kafka/pom.xml) and are
cached outside the repo, so only the first start needs the network:

    python3 deployments/local_kafka.py up [--port 9092] [--data-dir DIR]   # last line: bootstrap
    python3 deployments/local_kafka.py down [--data-dir DIR]
    python3 deployments/local_kafka.py jars                                 # prints the lib dir

Tests and benchmarks import it by path and use `ensure_jars()`, `start_broker()`,
`free_port()` and the `Broker` it returns (stop, restart, wait_ready).

Standard library only at module level, so it runs with any python3 >= 3.9; when
confluent_kafka happens to be importable it is used to confirm the broker serves metadata.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

KAFKA_VERSION = "4.4.0"
POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
DEFAULT_PORT = 9092
HOST = "127.0.0.1"

# Lean on purpose: a small heap leaves room for the pipeline on a laptop; G1 with short
# pauses is what Kafka's own scripts use. Override with LOCAL_KAFKA_JVM_OPTS.
JVM_OPTS = os.environ.get(
    "LOCAL_KAFKA_JVM_OPTS",
    "-Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20"
    " -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true",
).split()

STARTED_LINE = "Kafka Server started"  # logged by KafkaRaftServer once the broker is unfenced


class BrokerError(RuntimeError):
    """The broker could not be prepared, started or stopped; `log_tail` says why in detail."""

    def __init__(self, reason: str, log_tail: str = ""):
        super().__init__(f"{reason}\n{log_tail}" if log_tail else reason)
        self.reason = reason
        self.log_tail = log_tail


# --------------------------------------------------------------------------- paths


def cache_root() -> Path:
    """`${XDG_CACHE_HOME:-~/.cache}/logistics-pipeline`: jars and the default data dir."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "logistics-pipeline"


def default_data_dir() -> Path:
    return cache_root() / "kafka-data"


# --------------------------------------------------------------------------- jars


def ensure_jars() -> Path:
    """Return the directory holding the broker's jars, resolving them with Maven once.

    Maven copies into a scratch dir which is renamed into place, and a marker is written
    last, so an interrupted copy is never mistaken for a complete one. A file lock keeps
    concurrent callers (parallel test workers) from resolving twice.
    """
    home = cache_root() / f"kafka-{KAFKA_VERSION}"
    lib, marker = home / "lib", home / "COMPLETE"
    if marker.exists():
        return lib
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():  # another process finished while we waited
            return lib
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError("Maven (mvn) is not on PATH; it is needed once to fetch the Kafka jars")
        for stale in home.glob("lib.partial-*"):  # left by a run that was interrupted
            shutil.rmtree(stale, ignore_errors=True)
        scratch = home / f"lib.partial-{os.getpid()}"
        cmd = [
            mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={scratch}", f"-Dkafka.version={KAFKA_VERSION}",
        ]
        print(f"resolving Kafka {KAFKA_VERSION} jars with Maven into {lib} ...", file=sys.stderr, flush=True)
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        expected = [f"kafka_2.13-{KAFKA_VERSION}.jar", f"kafka-tools-{KAFKA_VERSION}.jar"]
        missing = [jar for jar in expected if not (scratch / jar).exists()]
        if done.returncode != 0 or missing:
            shutil.rmtree(scratch, ignore_errors=True)
            raise BrokerError(
                f"Maven could not resolve Kafka {KAFKA_VERSION} (exit {done.returncode}, missing {missing})",
                _tail(done.stdout),
            )
        shutil.rmtree(lib, ignore_errors=True)
        scratch.rename(lib)
        jars = sorted(p.name for p in lib.glob("*.jar"))
        marker.write_text(f"kafka {KAFKA_VERSION}\n" + "\n".join(jars) + "\n")
        return lib


# --------------------------------------------------------------------------- broker


def free_port() -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _port_open(port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=timeout):
        return True
    return False


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not java or not os.path.exists(java):
        raise BrokerError("java is not on PATH (Kafka 4 needs Java 17 or newer)")
    return java


@dataclass
class Broker:
    """One broker process serving from `data_dir`; restartable on the same storage."""

    data_dir: Path
    port: int
    controller_port: int
    pid: int = 0
    _proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "kafka.pid"

    def is_running(self) -> bool:
        if not self.pid:
            return False
        if self._proc is not None:  # our child: poll() also reaps it, so no zombie looks alive
            return self._proc.poll() is None
        return _pid_is_broker(self.pid, self.data_dir)

    def start(self, timeout: float = 60.0) -> Broker:
        """Launch the JVM detached (own session, output to broker.log) and wait until ready."""
        if self.is_running():
            return self.wait_ready(timeout)
        for port in (self.port, self.controller_port):
            if _port_open(port):
                raise BrokerError(f"port {port} on {HOST} is already in use")
        lib = ensure_jars()
        if self.log_path.exists():  # keep the previous run's log, so readiness only sees this run
            self.log_path.replace(self.log_path.with_suffix(".log.1"))
        cmd = [
            _java(), *JVM_OPTS, *_class_sharing_opts(dump_into=self.data_dir),
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp", str(lib / "*"), "kafka.Kafka", str(self.data_dir / "server.properties"),
        ]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                cmd, cwd=self.data_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = self._proc.pid
        self.pid_file.write_text(f"{self.pid}\n")
        try:
            return self.wait_ready(timeout)
        except BrokerError:
            self.stop(kill=True)  # leave no half-started broker behind for nobody to stop
            raise

    def wait_ready(self, timeout: float = 60.0) -> Broker:
        """Block until the broker serves requests, not merely accepts TCP connections.

        The log line comes after the broker caught up with the metadata log and was unfenced;
        when confluent_kafka is importable a metadata request must also list this broker.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_running():
                raise BrokerError(f"broker exited during startup (see {self.log_path})", self.log_tail())
            if self._logged_started() and _port_open(self.port) and _serves_metadata(self.bootstrap):
                return self
            time.sleep(0.2)
        raise BrokerError(f"broker not ready after {timeout:.0f}s (see {self.log_path})", self.log_tail())

    def stop(self, kill: bool = False, timeout: float = 30.0) -> None:
        """SIGTERM (a clean shutdown) and wait; SIGKILL if it takes too long, or at once if `kill`.

        `kill=True` simulates a crash, for tests of what survives one.
        """
        if self.is_running():
            os.kill(self.pid, signal.SIGKILL if kill else signal.SIGTERM)
            if not self._wait_exit(timeout):
                os.kill(self.pid, signal.SIGKILL)
                self._wait_exit(10.0)
            _adopt_class_dump(self.data_dir)
        self.pid_file.unlink(missing_ok=True)
        self._proc = None
        self.pid = 0

    def restart(self, kill: bool = False, timeout: float = 60.0) -> Broker:
        """Bounce the broker on the same data dir and ports, in place (this object stays valid)."""
        self.stop(kill=kill)
        return self.start(timeout)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return _tail(self.log_path.read_text(errors="replace"), lines)
        except FileNotFoundError:
            return ""

    def _logged_started(self) -> bool:
        try:
            return STARTED_LINE in self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return False

    def _wait_exit(self, timeout: float) -> bool:
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _pid_is_broker(self.pid, self.data_dir):
                return True
            time.sleep(0.1)
        return False


def _pid_is_broker(pid: int, data_dir: Path) -> bool:
    """True when `pid` is alive and (where /proc tells us) is the broker of `data_dir`, not a reused pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        with contextlib.suppress(OSError):
            return str(data_dir / "server.properties") in cmdline.read_bytes().decode(errors="replace")
    return True


def _class_archive() -> Path:
    """The shared class archive for this Kafka version and this exact JDK (an archive is JDK-specific)."""
    java = os.path.realpath(_java())
    tag = hashlib.sha1(f"{java}:{os.stat(java).st_mtime_ns}".encode()).hexdigest()[:12]
    return cache_root() / f"kafka-{KAFKA_VERSION}" / f"classes-{tag}.jsa"


def _class_sharing_opts(dump_into: Path | None = None) -> list[str]:
    """JVM flags for application class-data sharing, which cuts JVM start time by about 40%.

    Until an archive exists, a broker dumps the classes it loaded when it exits cleanly
    (into its data dir, `dump_into`); `_adopt_class_dump` checks that dump and moves it
    into the cache, next to the jars it was made from.
    """
    if dump_into is not None:
        _adopt_class_dump(dump_into)
    archive = _class_archive()
    quiet = "-Xlog:cds=off,cds+dynamic=off"  # a dump warns about every class it skips
    if archive.exists():
        return [f"-XX:SharedArchiveFile={archive}", quiet]
    if dump_into is not None:
        return [f"-XX:ArchiveClassesAtExit={dump_into / 'classes.jsa'}", quiet]
    return []


def _adopt_class_dump(data_dir: Path) -> None:
    """Move a stopped broker's class dump into the cache if a JVM can map it, else delete it.

    A dump cut short (the JVM killed while writing it) would crash every later start, hence
    the trial run with -Xshare:on, which fails instead of ignoring an unusable archive.
    """
    dump, archive = data_dir / "classes.jsa", _class_archive()
    if not dump.exists():
        return
    if not archive.exists():
        trial = subprocess.run(
            [
                _java(), "-Xshare:on", f"-XX:SharedArchiveFile={dump}", "-Xlog:cds=off,cds+dynamic=off",
                "-XX:ErrorFile=/dev/null", "-cp", str(ensure_jars() / "*"),
                "kafka.tools.StorageTool", "random-uuid",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        if trial.returncode == 0:
            scratch = archive.with_name(f"{archive.name}.{os.getpid()}.tmp")
            shutil.copyfile(dump, scratch)  # data dir and cache may be on different disks
            os.replace(scratch, archive)
    dump.unlink(missing_ok=True)


def _serves_metadata(bootstrap: str) -> bool:
    """Ask for cluster metadata with confluent_kafka if available; without it, trust the log line."""
    try:
        from confluent_kafka.admin import AdminClient
    except ImportError:
        return True
    try:
        metadata = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=2)
    except Exception:
        return False
    return bool(metadata.brokers)


def _read_ports(data_dir: Path) -> tuple[int, int] | None:
    """The (port, controller port) a previous start wrote into server.properties, if any."""
    props = data_dir / "server.properties"
    if not props.exists():
        return None
    for line in props.read_text().splitlines():
        if line.startswith("listeners="):
            ports = dict(item.split("://") for item in line.split("=", 1)[1].split(","))
            return int(ports["PLAINTEXT"].rsplit(":", 1)[1]), int(ports["CONTROLLER"].rsplit(":", 1)[1])
    return None


def _write_config(data_dir: Path, port: int, controller_port: int) -> None:
    """server.properties for one combined broker+controller, and a log4j2 config for its log.

    The quorum is static (controller.quorum.voters) rather than 4.x's dynamic `--standalone`
    one: the voter lives in this file, not in formatted storage, so nothing about it can go
    stale between restarts.
    """
    (data_dir / "server.properties").write_text(
        f"""# Written by deployments/local_kafka.py: one node that is both broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{HOST}:{controller_port}
listeners=PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}
advertised.listeners=PLAINTEXT://{HOST}:{port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs={data_dir / "kraft-logs"}
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# After a crash the controller keeps the dead broker's registration until its session
# expires (default 9 s); one node heartbeating in-process can afford a shorter session.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
"""
    )
    (data_dir / "log4j2.properties").write_text(
        """# INFO to stdout, which the launcher sends to broker.log.
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""
    )


def _new_cluster_id() -> str:
    """Kafka's Uuid.randomUuid() as text (URL-safe base64, no padding), without starting a JVM."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):  # Kafka avoids ids that look like a CLI flag
            return cluster_id


def _format_storage(data_dir: Path) -> None:
    """Format the KRaft log dir once; an existing one is kept, so restarts keep their data."""
    if (data_dir / "kraft-logs" / "meta.properties").exists():
        return
    lib = ensure_jars()
    cmd = [
        _java(), "-Xmx256m", "-XX:TieredStopAtLevel=1", *_class_sharing_opts(),  # short-lived: start fast
        f"-Dlog4j2.configurationFile={data_dir / 'log4j2.properties'}",
        "-cp", str(lib / "*"), "kafka.tools.StorageTool", "format",
        "--cluster-id", _new_cluster_id(), "--config", str(data_dir / "server.properties"),
        "--ignore-formatted",
    ]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        reason = f"formatting storage in {data_dir} failed (exit {done.returncode})"
        raise BrokerError(reason, _tail(done.stdout))


def running_broker(data_dir: Path) -> Broker | None:
    """The broker recorded in `data_dir` if it is still running, else None."""
    data_dir = Path(data_dir).resolve()
    pid_file, ports = data_dir / "kafka.pid", _read_ports(data_dir)
    if not pid_file.exists() or ports is None:
        return None
    try:
        pid = int(pid_file.read_text().strip())
    except ValueError:
        return None
    broker = Broker(data_dir, ports[0], ports[1], pid)
    return broker if broker.is_running() else None


def start_broker(
    data_dir: Path, port: int, controller_port: int | None = None, timeout: float = 60.0
) -> Broker:
    """Start (or find already running) a broker on `data_dir` and return it once it is ready.

    An existing data dir is reused as is: storage is formatted only the first time, and the
    controller port defaults to the one used before, so a stopped broker comes back with
    its topics and messages.
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    running = running_broker(data_dir)
    if running is not None:
        if running.port != port:
            raise BrokerError(f"the broker of {data_dir} already runs on port {running.port}, not {port}")
        return running.wait_ready(timeout)
    previous = _read_ports(data_dir)
    if controller_port is None:
        controller_port = previous[1] if previous and previous[1] != port else free_port()
    _write_config(data_dir, port, controller_port)
    _format_storage(data_dir)
    return Broker(data_dir, port, controller_port).start(timeout)


# --------------------------------------------------------------------------- CLI


def _up(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).expanduser().resolve()
    running = running_broker(data_dir)
    if running is not None:
        if args.port is not None and args.port != running.port:
            print(f"note: already running on port {running.port}, --port ignored", file=sys.stderr)
        print(running.bootstrap)
        return 0
    previous = _read_ports(data_dir)
    port = args.port or (previous[0] if previous else DEFAULT_PORT)
    began = time.monotonic()
    try:
        broker = start_broker(data_dir, port)
    except BrokerError as err:
        return _fail(err)
    took = time.monotonic() - began
    print(f"Kafka {KAFKA_VERSION} ready in {took:.1f}s, pid {broker.pid}", file=sys.stderr)
    print(broker.bootstrap)
    return 0


def _down(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).expanduser().resolve()
    broker = running_broker(data_dir)
    if broker is None:
        (data_dir / "kafka.pid").unlink(missing_ok=True)
        print(f"no broker running for {data_dir}", file=sys.stderr)
        return 0
    pid = broker.pid
    broker.stop()
    print(f"stopped broker pid {pid} ({data_dir})", file=sys.stderr)
    return 0


def _jars(_: argparse.Namespace) -> int:
    try:
        print(ensure_jars())
    except BrokerError as err:
        return _fail(err)
    return 0


def _fail(err: BrokerError) -> int:
    """Detail first, then the one-line reason last, where a reader of the output looks."""
    if err.log_tail:
        print(err.log_tail, file=sys.stderr)
    print(f"error: {err.reason}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the broker (or find it running); prints its bootstrap last")
    up.add_argument("--port", type=int, help=f"client port (default: the previous one, else {DEFAULT_PORT})")
    up.add_argument("--data-dir", default=str(default_data_dir()))
    up.set_defaults(func=_up)
    down = commands.add_parser("down", help="stop the broker of a data dir")
    down.add_argument("--data-dir", default=str(default_data_dir()))
    down.set_defaults(func=_down)
    jars = commands.add_parser("jars", help="resolve the Kafka jars (once) and print their directory")
    jars.set_defaults(func=_jars)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
