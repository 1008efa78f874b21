"""Real service processes for the end-to-end tests: `robustness serve` (embedded), or
`robustness serve --no-worker` plus `robustness worker` on the machine's Redis and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ADMIN_KEY = "e2e-admin-key"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
# The `digits_model` fixture's metadata, as the service tests upload it.
METADATA = {"name": "digits-cnn", "architecture": "madry_mnist", "num_classes": 10,
            "input_shape": [1, 8, 8]}
REDIS_URL = os.environ.get("ROBUSTNESS_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
POSTGRES_ADMIN_URL = os.environ.get("ROBUSTNESS_TEST_POSTGRES_URL",
                                    "postgresql://postgres@127.0.0.1:5432/test")


def require_services() -> bool:
    """CI sets ROBUSTNESS_TEST_REQUIRE_SERVICES=1: a missing Redis or PostgreSQL then fails the
    run instead of skipping the tests that need them."""
    return bool(os.environ.get("ROBUSTNESS_TEST_REQUIRE_SERVICES"))


def unavailable(what: str, exc: Exception):
    message = f"{what} is not reachable ({exc}); these tests need it running"
    if require_services():
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_redis_url() -> str:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=3)
        client.flushdb()
    except Exception as exc:  # noqa: BLE001 - any failure means unreachable
        unavailable(f"Redis at {REDIS_URL}", exc)
    return REDIS_URL


class PostgresDatabase:
    """A database of its own per test session, dropped afterwards."""

    def __init__(self):
        import psycopg

        self.name = f"robustness_test_{uuid.uuid4().hex[:10]}"
        try:
            with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as c:
                c.execute(f'CREATE DATABASE "{self.name}"')
        except Exception as exc:  # noqa: BLE001 - any failure means unreachable
            unavailable(f"PostgreSQL at {POSTGRES_ADMIN_URL}", exc)
        base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
        self.url = f"{base}/{self.name}"

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class Service:
    """Processes started with the same commands and environment variables as the README and
    docker-compose.yml use; stopped (and their logs shown on failure) at teardown."""

    def __init__(self, home: Path, env: dict[str, str], split: bool):
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "ROBUSTNESS_HOME": str(home),
                    "ROBUSTNESS_HEARTBEAT_SECONDS": "0.5", "ROBUSTNESS_RECONCILE_SECONDS": "1",
                    "ROBUSTNESS_LEASE_SECONDS": "6", "ROBUSTNESS_ADMIN_KEY": ADMIN_KEY,
                    "ROBUSTNESS_DEVICE": "cpu", "OMP_NUM_THREADS": "1", **env}
        for key in ("DATABASE_URL", "REDIS_URL"):
            if key not in env:
                self.env.pop(key, None)
        self.split = split
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}

    def start_process(self, name: str, args: list[str]) -> subprocess.Popen:
        log = self.home / f"{name}.log"
        self.logs[name] = log
        proc = subprocess.Popen([sys.executable, "-m", "robustness", *args], env=self.env,
                                stdout=open(log, "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
                                start_new_session=True)
        self.procs[name] = proc
        return proc

    def start(self, worker: bool = True) -> Service:
        if self.split:
            self.start_process("gateway", ["serve", "--no-worker", "--port", str(self.port)])
            if worker:
                self.start_process("worker", ["worker", "--concurrency", "1"])
        else:
            self.start_process("gateway", ["serve", "--port", str(self.port)])
        self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"service not healthy after {timeout} s:\n{self.tail()}")

    def tail(self, chars: int = 4000) -> str:
        return "\n".join(f"--- {name} ---\n{path.read_text(errors='replace')[-chars:]}"
                         for name, path in self.logs.items() if path.exists())

    def kill_worker(self) -> None:
        """SIGKILL the worker and its pool, as a lost machine would: the split deployment's
        worker process, or the embedded gateway's child worker (whose pid it logs)."""
        import re
        import signal

        if self.split:
            os.killpg(self.procs["worker"].pid, signal.SIGKILL)
            self.procs.pop("worker").wait()
            return
        log = self.logs["gateway"].read_text(errors="replace")
        pid = int(re.findall(r"child process (\d+)", log)[-1])
        os.killpg(pid, signal.SIGKILL)

    def stop(self) -> None:
        import signal

        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._kill_orphans()

    def _kill_orphans(self) -> None:
        """The embedded gateway stops its worker; should it have failed to, do it here."""
        import re
        import signal

        log = self.logs.get("gateway")
        if self.split or log is None or not log.exists():
            return
        for pid in map(int, re.findall(r"child process (\d+)", log.read_text(errors="replace"))):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


class Receiver:
    """A local HTTP receiver of callbacks: records each POST as (path, Host header, body),
    its headers in `headers`, and answers `statuses` in turn (then 204). A context manager:
    it stops when the block ends."""

    def __init__(self, statuses: list[int] | None = None):
        import threading
        from http.server import BaseHTTPRequestHandler, HTTPServer

        received, headers = self.received, self.headers = [], []
        answers = list(statuses or [])

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, self.headers["Host"], body))
                headers.append(dict(self.headers))
                self.send_response(answers.pop(0) if answers else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Hook)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self) -> Receiver:  # noqa: PYI034
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()


def wait_for(client: httpx.Client, path: str, until, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(path).json()
        if until(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not reach the expected state: {body}")
        time.sleep(0.3)


def finished(body: dict) -> bool:
    return body["status"] in ("succeeded", "failed", "cancelled")


class PrivateRedis:
    """A redis-server of the test's own on a free port, so it can be killed and restarted
    (without persistence, like the machine's) without touching anyone else's."""

    def __init__(self, workdir: Path):
        import shutil

        if shutil.which("redis-server") is None:
            unavailable("redis-server", FileNotFoundError("not on PATH"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    def start(self) -> PrivateRedis:
        import redis

        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind",
                                      "127.0.0.1", "--save", "", "--appendonly", "no",
                                      "--dir", str(self.workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if redis.Redis.from_url(self.url, socket_timeout=1).ping():
                    return self
            except redis.RedisError:
                time.sleep(0.1)
        raise RuntimeError("private redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def split_deployment(workdir: Path, net, env: dict | None = None):
    """A gateway and workers of their own (not started) on a private Redis and a fresh
    PostgreSQL database, and `net`'s weights saved for upload: (service, redis, weights)."""
    from robustness.models import save_state_dict

    pg = PostgresDatabase()
    redis = PrivateRedis(workdir).start()
    svc = Service(workdir / "home", {"REDIS_URL": redis.url, "DATABASE_URL": pg.url,
                                     **(env or {})}, split=True)
    (workdir / "home").mkdir()
    weights = workdir / "digits.safetensors"
    save_state_dict(net, weights)
    try:
        yield svc, redis, weights
    finally:
        svc.stop()
        redis.kill()
        pg.drop()


def register_model(client: httpx.Client, weights: Path) -> str:
    """Upload the `digits_model` fixture's weights; the model's id."""
    with open(weights, "rb") as f:
        r = client.post("/v1/models", files={"file": ("digits.safetensors", f)},
                        data={"metadata": json.dumps(METADATA)})
    assert r.status_code == 201, r.text
    return r.json()["id"]
