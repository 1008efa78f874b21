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
# What a running job may write to its record through `record` (the heartbeat stores them).
RECORDED = {"phase", "history"}
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
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "workers.sandbox_child", str(from_parent), str(to_parent),
                 str(os.getpid())],
                pass_fds=(from_parent, to_parent), stdin=subprocess.DEVNULL,
                # Its own process group, so that it is killed with whatever it started, and is
                # spared the terminal's Ctrl-C (the worker's warm shutdown decides); not a session
                # of its own, which Linux would schedule as a separate group, outside the
                # worker's nice level and CPU share.
                process_group=0)
        except BaseException:
            for fd in (from_parent, to_child, from_child, to_parent):
                os.close(fd)
            raise
        os.close(from_parent)
        os.close(to_parent)
        self.inbox = Connection(from_child, writable=False)
        self.outbox = Connection(to_child, readable=False)
        self.ready_at: float | None = None
        self.started = time.monotonic()
        try:
            send(self.outbox, settings=json.loads(self.key))
        except OSError:
            self.kill()
            raise

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, job_id: str, beat, grace: float, shard: int | None = None) -> Ended:
        """Run one job (or one `shard` of a sharded audit), relaying progress to `beat` and
        stopping when `beat.stop_requested()` names a reason. Messages are read for at most
        one poll interval at a time, so a job that reports progress without pause is still
        stopped."""
        try:
            send(self.outbox, job=job_id, **({} if shard is None else {"shard": shard}))
        except OSError:
            return self._died()
        asked_at = None
        while True:
            until = time.monotonic() + POLL_SECONDS
            while self.inbox.poll(max(0.0, until - time.monotonic())):
                try:
                    message = receive(self.inbox)
                except EOFError:
                    return self._died()
                except (OSError, ValueError) as exc:  # oversized or garbled: not our child's
                    self.kill()
                    return Ended("error", f"the process running the model sent an unreadable "
                                          f"message ({type(exc).__name__}); it was stopped")
                ended = self._handle(message, job_id, beat)
                if ended is not None:
                    return ended
                if time.monotonic() >= until:
                    break
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

    def _handle(self, message: dict, job_id: str, beat) -> Ended | None:
        if "ready" in message:
            self.ready_at = time.monotonic()
        elif "progress" in message:
            done, total, phase = message["progress"]
            beat.progress(int(done), int(total), str(phase))
        elif "record" in message:
            beat.record(**{k: v for k, v in message["record"].items() if k in RECORDED})
        elif message.get("job") != job_id:  # an outcome must name the job it belongs to
            self.kill()
            return Ended("error", "the process running the model answered for another job; "
                                  "it was stopped")
        else:
            how = next(k for k in ("outcome", "stopped", "error") if k in message)
            return Ended(how, message[how])
        return None

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
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:  # stuck in the kernel (a device, a network disk)
            log.error("sandbox %s did not die within 10 s of SIGKILL", self.proc.pid)
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
    gives it back once the job has ended in it, if it is still usable; at most `keep` wait
    idle (a threads pool of more jobs at once starts the surplus per job)."""

    def __init__(self, keep: int = 4):
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

    def run(self, settings, job_id: str, beat, shard: int | None = None) -> Ended:
        """Run a job (or one shard of an audit) in an idle sandbox and end it there. Whatever
        goes wrong is the job's `Ended`, never the worker's exception; a sandbox the job left
        unusable is killed and a fresh one started, so the next job does not wait for torch."""
        what = "job" if shard is None else f"shard {shard} of"
        sandbox, idle = None, False
        try:
            sandbox = self.take(settings)
            ended = sandbox.run(job_id, beat, settings.stop_grace_seconds, shard=shard)
            # the job ended in the sandbox, which now waits for the next one
            idle = ended.how in ("outcome", "stopped", "error") and sandbox.alive
        except Exception as exc:  # a job fails; the worker never dies
            log.exception("%s %s: sandbox failed", what, job_id)
            ended = Ended("error", f"internal error ({type(exc).__name__}: {exc})")
        except BaseException:  # the worker is going down: so is the job's sandbox
            if sandbox is not None:
                sandbox.kill()
            raise
        finally:
            beat.done.set()
        if sandbox is not None:
            if idle:
                self.give_back(sandbox)
            else:
                sandbox.kill()
                self.prewarm(settings)
        return ended

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
