"""Untrusted model code runs in a child process that the worker can stop.

A checkpoint's own code (TorchScript, a torch.export graph) runs when it is loaded and at every
forward pass, and a hostile or broken one may never return to the batch boundary where a job
looks for a cancel or its time limit. So a worker process runs no job itself: it hands the job
id to a sandbox, a child process (`workers.sandbox_child`) that loads data and model, runs the
library and reports progress over a pipe. The worker keeps the heartbeat and the job record,
and asks the sandbox to stop on a cancel, a lost claim or the time limit; a sandbox that has
not stopped `stop_grace_seconds` later is killed, with every process it started. The job then
ends with a reason and the task returns normally, so the broker never redelivers it.

A sandbox serves job after job and keeps its model and data caches; a killed or dead one is
replaced at the next job. Messages are JSON, never pickle (the child runs code nobody here
wrote), each one `send_bytes` frame on a pipe of its own (the model's code may print).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
MAX_MESSAGE_BYTES = 64 << 20
# A fresh sandbox imports torch and the library before it reads its first job; a stop asked in
# that time waits for it, since none of that is the model's code.
STARTUP_SECONDS = 300.0


def send(conn: Connection, **message) -> None:
    conn.send_bytes(json.dumps(message).encode())


def receive(conn: Connection) -> dict:
    return json.loads(conn.recv_bytes(MAX_MESSAGE_BYTES))


class Ended:
    """How a job ended in its sandbox: `outcome` (the runner's columns), `stopped` (it stopped
    when asked), `error` (a failure reason), `killed` (it did not stop in time) or `died`."""

    def __init__(self, how: str, value):
        self.how, self.value = how, value


class Sandbox:
    def __init__(self, settings):
        self.key = settings.model_dump_json()
        from_parent, to_child = os.pipe()
        from_child, to_parent = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workers.sandbox_child", str(from_parent), str(to_parent),
             str(os.getpid())],
            pass_fds=(from_parent, to_parent), stdin=subprocess.DEVNULL,
            # Its own process group, so that it is killed with whatever it started, and is
            # spared the terminal's Ctrl-C (the worker's warm shutdown decides); not a session
            # of its own, which Linux would schedule as a separate group, outside the
            # worker's nice level and CPU share.
            process_group=0)
        os.close(from_parent)
        os.close(to_parent)
        self.inbox = Connection(from_child, writable=False)
        self.outbox = Connection(to_child, readable=False)
        self.ready_at: float | None = None
        self.started = time.monotonic()
        send(self.outbox, settings=json.loads(self.key))

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, job_id: str, beat, grace: float) -> Ended:
        """Run one job, relaying progress to `beat` and stopping when `beat.stop_requested()`
        names a reason."""
        try:
            send(self.outbox, job=job_id)
        except OSError:
            return self._died()
        asked_at = None
        while True:
            if self.inbox.poll(POLL_SECONDS):
                try:
                    message = receive(self.inbox)
                except (EOFError, OSError):
                    return self._died()
                if "ready" in message:
                    self.ready_at = time.monotonic()
                elif "progress" in message:
                    beat.progress(*message["progress"])
                elif "record" in message:
                    beat.record(**message["record"])
                else:
                    (how, value), = message.items()
                    return Ended(how, value)
                continue
            if not self.alive and not self.inbox.poll(0):
                return self._died()
            reason = beat.stop_requested()
            if reason is None:
                continue
            if asked_at is None:
                asked_at = time.monotonic()
                try:
                    send(self.outbox, stop=reason)
                except OSError:
                    return self._died()
            now = time.monotonic()
            if self.ready_at is None:  # still importing: not the model's code yet
                waited = now - self.started - STARTUP_SECONDS
            else:
                waited = now - max(asked_at, self.ready_at)
            if waited > grace:
                self.kill()
                return Ended("killed", reason)

    def _died(self) -> Ended:
        self.kill()
        code = self.proc.returncode
        if code is not None and code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
            if code == -signal.SIGKILL:
                how += ", e.g. for lack of memory"
        else:
            how = f"exit status {code}"
        return Ended("died", f"the process running the model ended unexpectedly ({how})")

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        self._close()

    def close(self, timeout: float = 10.0) -> None:
        """An idle sandbox ends when its job pipe closes; killed if it does not."""
        self._close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def _close(self) -> None:
        for conn in (self.inbox, self.outbox):
            if not conn.closed:
                conn.close()


class Sandboxes:
    """This process's idle sandboxes. A job takes one for its settings (or starts one) and
    gives it back if it is still usable; at most `keep` wait idle."""

    def __init__(self, keep: int = 2):
        self.keep = keep
        self.idle: list[Sandbox] = []
        self.lock = threading.Lock()

    def take(self, settings) -> Sandbox:
        key = settings.model_dump_json()
        with self.lock:
            for sandbox in list(self.idle):
                if sandbox.key == key:
                    self.idle.remove(sandbox)
                    if sandbox.alive:
                        return sandbox
                    sandbox.kill()
        return Sandbox(settings)

    def give_back(self, sandbox: Sandbox) -> None:
        if not sandbox.alive or sandbox.inbox.closed:
            sandbox.kill()
            return
        with self.lock:
            self.idle.append(sandbox)
            surplus = self.idle[:-self.keep] if len(self.idle) > self.keep else []
            del self.idle[:len(surplus)]
        for old in surplus:
            old.close()

    def prewarm(self, settings) -> None:
        """Start a sandbox before the first job arrives, so that job does not wait for torch."""
        self.give_back(Sandbox(settings))

    def close_all(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for sandbox in idle:
            sandbox.close()


SANDBOXES = Sandboxes()
atexit.register(SANDBOXES.close_all)
