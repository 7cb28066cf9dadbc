"""A real Apache Kafka 4.x broker (KRaft, one combined broker+controller) as a local process.

The jars come from Maven Central through ``deploy/kafka/pom.xml`` (no Docker here), and the
broker is a plain ``java`` child process, so tests can start, stop, kill and restart it.

CLI::

    python -m deploy.local.kafka fetch
    python -m deploy.local.kafka run --port 9092 --data-dir var/kafka/run
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Self

from deploy.local.errors import StackError, first_line, log_tail
from deploy.local.lifetime import die_with_parent
from shared.kafka_access import ADMIN, ADMIN_MECHANISM, SCRAM_MECHANISM
from shared.kafka_grants import apply_in_thread

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_LIBS = REPO_ROOT / "var/kafka/libs"
KAFKA_POM = REPO_ROOT / "deploy/kafka/pom.xml"

_KAFKA_JAR = re.compile(r"^kafka_2\.13-(?P<version>.+)\.jar$")

# Measured on this 2-core machine (median of 3, Kafka 4.1.1; cold = incl. storage format):
#   G1 + C2 (JVM defaults)  cold 3.25 s  warm 2.33 s
#   + SerialGC              cold 3.11 s  warm 2.23 s
#   + C1 only               cold 2.28 s  warm 1.62 s
#   + both                  cold 2.20 s  warm 1.62 s
#   + both + CDS archive    cold 1.33 s  warm 0.91 s   (see LocalKafka._cds_flags)
# C1-only JIT (TieredStopAtLevel=1) trades peak throughput for start-up; pass jvm_flags
# without it for a load test. SerialGC: no concurrent GC threads fighting for 2 cores.
JVM_FLAGS: tuple[str, ...] = (
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)

# AppCDS archives of the broker's classes, one per Kafka version, made by the first broker
# that stops cleanly and reused by every later JVM (class loading dominates start-up).
CDS_DIR = REPO_ROOT / "var/kafka/cds"

# Everything goes to stdout, which start() sends to data_dir/kafka.log. The request logger
# is at WARN because at INFO/DEBUG it would log every request.
LOG4J2_PROPERTIES = """\
status = warn
shutdownHook = disable
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = warn
"""


def ensure_jars() -> Path:
    """Fetch the broker's jars once with Maven; later calls reuse them. Returns the libs dir."""
    if _kafka_jars(KAFKA_LIBS):
        return KAFKA_LIBS
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError(
            "Maven ('mvn') is not on PATH; it is needed once to fetch the Kafka jars "
            f"into {KAFKA_LIBS} (install it with: apt-get install -y maven)"
        )
    command = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(KAFKA_POM),
        "dependency:copy-dependencies",
        f"-Dkafka.libs.dir={KAFKA_LIBS}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not _kafka_jars(KAFKA_LIBS):
        raise RuntimeError(
            f"fetching Kafka jars failed ({' '.join(command)}), exit {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return KAFKA_LIBS


def kafka_version(libs: Path = KAFKA_LIBS) -> str:
    """The Kafka version, read from the kafka_2.13-<version>.jar file name."""
    jars = _kafka_jars(libs)
    if len(jars) != 1:
        # Two versions side by side would put both on the classpath: refuse rather than guess.
        raise RuntimeError(
            f"expected exactly one kafka_2.13-*.jar in {libs}, found {[j.name for j in jars]}; "
            f"remove {libs} and run ensure_jars() again"
        )
    match = _KAFKA_JAR.match(jars[0].name)
    assert match is not None  # _kafka_jars only returns matching names
    return match["version"]


def _kafka_jars(libs: Path) -> list[Path]:
    return sorted(p for p in libs.glob("kafka_2.13-*.jar") if _KAFKA_JAR.match(p.name))


def java_properties(settings: dict[str, str]) -> str:
    """A .properties file's text as java.util.Properties reads it: in ISO-8859-1, so any
    other letter (a clone under 'Überweisung' or '試験') as a \\uXXXX escape, and backslashes
    doubled."""
    lines = []
    for key, value in settings.items():
        escaped = value.replace("\\", "\\\\").replace("\n", "\\n")
        # UTF-16 code units: a letter beyond the BMP is a surrogate pair of escapes.
        units = escaped.encode("utf-16-be")
        text = "".join(
            chr(unit) if unit < 0x80 else f"\\u{unit:04x}"
            for unit in (int.from_bytes(units[i : i + 2], "big") for i in range(0, len(units), 2))
        )
        lines.append(f"{key}={text}\n")
    return "".join(lines)


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def random_cluster_id() -> str:
    """A cluster id as Kafka's Uuid.randomUuid() makes it: 16 random bytes, base64url."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # Kafka rejects ids starting with '-' (they look like command-line options).
        if not cluster_id.startswith("-"):
            return cluster_id


def java_executable() -> str:
    """JAVA_HOME's java if set, else the one on PATH (the broker needs Java 17+)."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin/java").exists():
        return str(Path(java_home) / "bin/java")
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("no 'java' on PATH (Kafka 4.x needs Java 17+)")
    return java


def secured_properties(client: str, controller: str, admin_password: str) -> dict[str, str]:
    """Clients sign in with SASL/SCRAM-SHA-512 and may do what their ACLs allow, nothing else.

    The broker's own traffic (inter-broker, and to the controller, which this one node also
    is) signs in as the super user `admin` with SASL/PLAIN, whose password is in this
    configuration: it works before any SCRAM user exists (those live in the metadata log),
    and no port lets anyone in without a password. Clients may use PLAIN too, but only the
    admin has a PLAIN password. Plaintext on the wire, as the local stack is on loopback; a
    deployment across machines puts TLS under it (SASL_SSL).
    """
    plain = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{ADMIN}" password="{admin_password}" user_{ADMIN}="{admin_password}";'
    )
    return {
        "listeners": f"BROKER://{client},CONTROLLER://{controller}",
        "advertised.listeners": f"BROKER://{client},CONTROLLER://{controller}",
        "listener.security.protocol.map": "BROKER:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
        "inter.broker.listener.name": "BROKER",
        "sasl.enabled.mechanisms": f"{SCRAM_MECHANISM},{ADMIN_MECHANISM}",
        "sasl.mechanism.inter.broker.protocol": ADMIN_MECHANISM,
        "sasl.mechanism.controller.protocol": ADMIN_MECHANISM,
        "listener.name.broker.sasl.enabled.mechanisms": f"{SCRAM_MECHANISM},{ADMIN_MECHANISM}",
        "listener.name.broker.scram-sha-512.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
        "listener.name.broker.plain.sasl.jaas.config": plain,
        "listener.name.controller.sasl.enabled.mechanisms": ADMIN_MECHANISM,
        "listener.name.controller.plain.sasl.jaas.config": plain,
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN}",
        "allow.everyone.if.no.acl.found": "false",
    }


@dataclass(frozen=True)
class Quorum:
    """A node's place in a cluster of several (deploy/local/kafka_cluster.py): its id, every
    controller's address by node id (a static quorum: each node is broker and controller),
    and the cluster's id, the same on every node's storage."""

    node_id: int
    voters: Mapping[int, str]  # node id -> host:controller port
    cluster_id: str

    @property
    def replicas(self) -> int:
        """Replicas of the internal topics, and the default of any topic: three at most."""
        return min(len(self.voters), 3)


class LocalKafka:
    """One KRaft node (broker+controller) running from KAFKA_LIBS, with its state in data_dir:
    a cluster of its own, or with `quorum`, one node of several.

    With `passwords` (principal -> password, the admin's included) it authenticates every
    client and applies shared/kafka_access.py's ACLs (`secured_properties`); without, it is
    an open plaintext broker.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        controller_port: int | None = None,
        host: str = "127.0.0.1",
        *,
        jvm_flags: Sequence[str] = JVM_FLAGS,
        die_with_parent: bool = False,
        passwords: Mapping[str, str] | None = None,
        quorum: Quorum | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.passwords = dict(passwords) if passwords is not None else None
        self.quorum = quorum
        self.host = host
        self.jvm_flags = tuple(jvm_flags)
        # The broker gets SIGTERM when the thread that started it ends (`make run`).
        self.die_with_parent = die_with_parent
        # Ports are fixed here, not in start(), so that a restart keeps the same address.
        self.port = port if port is not None else free_port()
        self.controller_port = controller_port if controller_port is not None else free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        # (temp file this run's JVM dumps a CDS archive to, final archive path)
        self._cds_dump: tuple[Path, Path] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def secured(self) -> bool:
        return self.passwords is not None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "kafka.log"

    @property
    def properties_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 60.0) -> None:
        """Start the broker and return once it answers a Metadata request listing itself."""
        if self.running:
            return
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the process, without waiting for it (the nodes of a cluster start together:
        none is ready before a majority of the controllers runs)."""
        if self.running:
            return
        self.kill()  # reap a broker that died by itself, if any, and close its log
        libs = ensure_jars()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self._format_storage(libs)
        self._launch(libs)

    def wait_ready(self, timeout: float = 60.0) -> None:
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.kill()
            raise

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (clean shutdown), SIGKILL if still alive after timeout. Safe to call twice."""
        self._signal_and_wait(signal.SIGTERM, timeout)

    def terminate(self) -> None:
        """SIGTERM, without waiting (a cluster's nodes are told together: see stop)."""
        process = self._process
        if process is not None and process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the broker (an unclean crash, for fault tests)."""
        self._signal_and_wait(signal.SIGKILL, 10.0)

    def restart(self, timeout: float = 60.0) -> None:
        """Stop, then start again on the same data_dir and ports (the data is kept)."""
        self.stop()
        self.start(timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    # -- start-up steps ------------------------------------------------------------------

    def server_properties(self) -> dict[str, str]:
        plaintext = self._plaintext_properties()
        if self.passwords is None:
            return plaintext
        controller = f"{self.host}:{self.controller_port}"
        admin_password = self.passwords[ADMIN]
        return plaintext | secured_properties(self.bootstrap_servers, controller, admin_password)

    def _quorum_properties(self) -> dict[str, str]:
        controller = f"{self.host}:{self.controller_port}"
        if self.quorum is None:
            # Kafka 4.x dynamic quorum (KIP-853): bootstrap servers + `format --standalone`.
            return {"node.id": "1", "controller.quorum.bootstrap.servers": controller}
        voters = ",".join(f"{node}@{address}" for node, address in self.quorum.voters.items())
        replicas, in_sync = str(self.quorum.replicas), str(max(1, self.quorum.replicas - 1))
        return {
            "node.id": str(self.quorum.node_id),
            # A static quorum: every node knows every controller from its configuration.
            "controller.quorum.voters": voters,
            # What a cluster of three is for: every partition on three brokers, a write
            # acknowledged once on two of them (internal topics too).
            "default.replication.factor": replicas,
            "min.insync.replicas": in_sync,
            "offsets.topic.replication.factor": replicas,
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": in_sync,
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": in_sync,
            # A broker back from a crash leads its partitions again once in sync.
            "auto.leader.rebalance.enable": "true",
            "leader.imbalance.check.interval.seconds": "30",
        }

    def _plaintext_properties(self) -> dict[str, str]:
        controller = f"{self.host}:{self.controller_port}"
        return {
            "process.roles": "broker,controller",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listeners": f"PLAINTEXT://{self.bootstrap_servers},CONTROLLER://{controller}",
            # Controllers advertise their listener too in 4.x, or they log warnings.
            "advertised.listeners": (
                f"PLAINTEXT://{self.bootstrap_servers},CONTROLLER://{controller}"
            ),
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir / "logs"),
            # The largest message the broker takes (Kafka's default, set on purpose): the
            # contract's limit is far below it (shared/limits.py), so answers and dead
            # letters always fit.
            "message.max.bytes": "1048588",
            "num.partitions": "3",
            "auto.create.topics.enable": "true",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            # Internal topics default to 3 replicas, impossible with one broker.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Fewer internal partitions (defaults 50) so the first consumer group or
            # transaction does not wait for dozens of partitions to be created and loaded.
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.num.partitions": "1",
            # Kafka's default waits 3 s for more members before a new group's first
            # rebalance. None at all (0) let the first of a subscriber's three consumers take
            # every partition alone, and the others joining a moment later cost a rebalance
            # that the first learns of at its next heartbeat, 3 s on: with SASL (a longer
            # handshake per connection) that happened on most starts of `make run`
            # (11 waits in 5 starts); a 0.1 s window lets the three join at once (none in
            # 6 starts; 0.3 s did as well, but each group's first join waits it out).
            "group.initial.rebalance.delay.ms": "100",
            # After a kill -9 the controller keeps the dead incarnation's broker session
            # until it times out (default 9 s), refusing the restarted broker meanwhile.
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "3000",
        } | self._quorum_properties()

    def _write_config(self) -> None:
        _write_private(self.properties_path, java_properties(self.server_properties()))
        (self.data_dir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)

    def _java(self, libs: Path, flags: Sequence[str], main_class: str, *args: str) -> list[str]:
        log4j = f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}"
        # 'libs/*' is expanded by java itself, not the shell.
        classpath = f"{libs}/*"
        return [
            java_executable(),
            *self.jvm_flags,
            *flags,
            log4j,
            "-cp",
            classpath,
            main_class,
            *args,
        ]

    def _cds_flags(self, libs: Path, dump: bool) -> list[str]:
        """Map the CDS archive if there is one, else (if dump) have this JVM write it at exit.

        An archive made for other jars or another JDK is ignored by the JVM with a warning.
        """
        archive = CDS_DIR / f"kafka-{kafka_version(libs)}.jsa"
        if archive.exists():
            return [f"-XX:SharedArchiveFile={archive}"]
        if not dump:
            return []
        CDS_DIR.mkdir(parents=True, exist_ok=True)
        _remove_orphaned_dumps(archive)
        # A private temp name: brokers started in parallel must not write the same file.
        temp = archive.with_name(f"{archive.name}.{os.getpid()}-{id(self)}.tmp")
        self._cds_dump = (temp, archive)
        return [f"-XX:ArchiveClassesAtExit={temp}"]

    def _publish_cds_archive(self, exited_cleanly: bool) -> None:
        if self._cds_dump is None:
            return
        temp, archive = self._cds_dump
        self._cds_dump = None
        if exited_cleanly and temp.exists():
            os.replace(temp, archive)  # atomic: readers see no archive or a whole one
        else:
            temp.unlink(missing_ok=True)  # the dump may have been cut short by SIGKILL

    def _format_storage(self, libs: Path) -> None:
        """Format the log dir once, atomically: into a scratch folder, renamed when whole.

        A formatted log dir holds meta.properties (formatting twice is an error in Kafka).
        One without it was cut short while formatting by an older version and never served:
        it is made anew rather than read as the half of another cluster.
        """
        logs = self.data_dir / "logs"
        if (logs / "meta.properties").exists():
            return
        scratch = self.data_dir / "logs.formatting"
        for leftover in (logs, scratch):
            shutil.rmtree(leftover, ignore_errors=True)
        properties = self.data_dir / "format.properties"
        settings = {**self.server_properties(), "log.dirs": str(scratch)}
        _write_private(properties, java_properties(settings))
        command = self._java(
            libs,
            self._cds_flags(libs, dump=False),
            "kafka.tools.StorageTool",
            "format",
            # One node: a quorum of itself. Several: the quorum their configuration names.
            *(("--standalone", "-t", random_cluster_id()) if self.quorum is None
              else ("-t", self.quorum.cluster_id)),
            "-c",
            str(properties),
        )  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            output = f"{result.stdout}\n{result.stderr}"
            raise StackError(
                f"formatting Kafka's storage in {scratch} failed (exit {result.returncode}): "
                f"{first_line(output, containing=('Exception', 'Error', 'error'))}",
                details=output,
            )
        scratch.rename(logs)
        properties.unlink()

    def _launch(self, libs: Path) -> None:
        # Appending keeps the log of earlier runs (useful after a kill/restart).
        self._log_file = self.log_path.open("ab")
        self._process = subprocess.Popen(
            self._java(
                libs, self._cds_flags(libs, dump=True), "kafka.Kafka", str(self.properties_path)
            ),
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            # Own session/process group: signals reach the JVM and anything it spawns,
            # and a Ctrl-C in our terminal does not hit the broker behind our back.
            start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGTERM) if self.die_with_parent else None,
        )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            process = self._process
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                tail = self.log_tail()
                reason = first_line(tail, containing=("Exception", "ERROR", "Error"))
                raise StackError(
                    f"Kafka exited during start-up (exit {code}): {reason}; log: {self.log_path}",
                    details=tail,
                )
            if self.passwords is not None and _accepts(self.host, self.port):
                self._grant(deadline)
                return
            if self.passwords is None and broker_is_ready(self.host, self.port):
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"Kafka did not become ready on {self.bootstrap_servers} within "
                    f"{timeout:.0f}s; log: {self.log_path}",
                    details=self.log_tail(),
                )
            time.sleep(0.1)

    def _grant(self, deadline: float) -> None:
        """The principals' users and ACLs (shared/kafka_grants.py), applied on every start:
        the broker keeps them, so a restart only finds them there."""
        assert self.passwords is not None
        users = {name: pw for name, pw in self.passwords.items() if name != ADMIN}
        try:
            apply_in_thread(
                self.bootstrap_servers,
                self.passwords[ADMIN],
                users,
                wait_s=max(1.0, deadline - time.monotonic()),
            )
        except Exception as error:
            raise StackError(
                f"Kafka started but its users and ACLs could not be set: {error!r}; "
                f"log: {self.log_path}",
                details=self.log_tail(),
            ) from error

    def _signal_and_wait(self, sig: signal.Signals, timeout: float) -> None:
        process = self._process
        exited_cleanly = sig == signal.SIGTERM
        if process is not None and process.poll() is None:
            _signal_group(process.pid, sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                exited_cleanly = False
                _signal_group(process.pid, signal.SIGKILL)
                process.wait()
        self._process = None
        self._publish_cds_archive(exited_cleanly)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def _write_private(path: Path, text: str) -> None:
    """A file only its owner may read (the admin's password may be in it)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    path.chmod(0o600)


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _remove_orphaned_dumps(archive: Path) -> None:
    """Dumps (tens of MB each) whose starter died before it could publish or remove them:
    a broker that outlived a SIGKILLed `make run` still dumps its classes when it stops."""
    for dump in archive.parent.glob(f"{archive.name}.*-*.tmp"):
        starter = dump.name.removeprefix(f"{archive.name}.").split("-", 1)[0]
        try:
            os.kill(int(starter), 0)
        except ProcessLookupError:
            dump.unlink(missing_ok=True)
        except (ValueError, PermissionError):
            continue


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(pid, sig)  # pid == pgid thanks to start_new_session


# -- readiness probe: a real Kafka Metadata request over a plain socket --------------------
#
# Synchronous stdlib code on purpose: start() may be called from inside a running event loop
# (async tests), where aiokafka could not be driven with asyncio.run().

_METADATA_API_KEY = 3
# v4: the plain (non-flexible) encoding, still served by Kafka 4.x (which dropped v0-v3).
_METADATA_VERSION = 4
_PROBE_CORRELATION_ID = 0x4B50


def broker_is_ready(host: str, port: int, timeout: float = 2.0) -> bool:
    """True once the broker serves requests and lists at least one (unfenced) broker."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_metadata_request(_PROBE_CORRELATION_ID))
            return _broker_count(_read_response(sock)) > 0
    except (OSError, struct.error, ValueError):
        return False


def _metadata_request(correlation_id: int) -> bytes:
    client_id = b"local-kafka-probe"
    header = (
        struct.pack(">hhih", _METADATA_API_KEY, _METADATA_VERSION, correlation_id, len(client_id))
        + client_id
    )
    # topics = [] (none, we only want brokers), allow_auto_topic_creation = false
    body = struct.pack(">i?", 0, False)
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def _read_response(sock: socket.socket) -> bytes:
    size = struct.unpack(">i", _read_exactly(sock, 4))[0]
    return _read_exactly(sock, size)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ValueError("connection closed mid-response")
        chunks += chunk
    return bytes(chunks)


def _broker_count(response: bytes) -> int:
    # correlation_id (int32), throttle_time_ms (int32, v3+), then the brokers array length.
    correlation_id, _throttle_ms, brokers = struct.unpack_from(">iii", response)
    if correlation_id != _PROBE_CORRELATION_ID:
        raise ValueError("not a response to our Metadata request")
    count: int = brokers
    return count


# -- CLI --------------------------------------------------------------------------------


def _cmd_fetch(_args: argparse.Namespace) -> int:
    libs = ensure_jars()
    print(libs)
    print(kafka_version(libs))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    kafka = LocalKafka(
        Path(args.data_dir), port=args.port, controller_port=args.controller_port, host=args.host
    )
    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    started = time.monotonic()
    kafka.start()
    print(kafka.bootstrap_servers, flush=True)
    print(
        f"# Kafka {kafka_version()} ready in {time.monotonic() - started:.1f}s, "
        f"pid {kafka.pid}, log {kafka.log_path}; Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
    try:
        # Wake up now and then to notice a broker that died by itself.
        while not stop_requested.wait(1.0):
            if not kafka.running:
                print(f"Kafka exited:\n{kafka.log_tail()}", file=sys.stderr)
                return 1
    finally:
        kafka.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.local.kafka",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="fetch the Kafka jars, print libs dir and version")
    fetch.set_defaults(handler=_cmd_fetch)
    run = commands.add_parser("run", help="run a broker until SIGINT/SIGTERM")
    run.add_argument("--port", type=int, default=9092)
    run.add_argument("--controller-port", type=int, default=None)
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--data-dir", default="var/kafka/run")
    run.set_defaults(handler=_cmd_run)
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
