"""`robustness serve` and `robustness keys`, added to the library's command (robustness/cli.py).

`robustness serve` with no configuration runs everything on this machine: the gateway, a
child worker process, an embedded broker (SQLite) and SQLite job records under
ROBUSTNESS_HOME. `--no-worker` and `robustness worker` split them for a deployment on Redis
and PostgreSQL (REDIS_URL, DATABASE_URL).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

from robustness import paths


def add_commands(sub) -> None:
    serve = sub.add_parser("serve", help="run the HTTP gateway (and a worker, unless "
                           "--no-worker)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-worker", dest="no_worker", action="store_true",
                       help="gateway only; run `robustness worker` separately")
    serve.add_argument("--demo", action="store_true", help="register a small demo model "
                       "trained in seconds on real data, and print a curl line to audit it")
    serve.add_argument("--data-root", help="where data sets are (default "
                       "$ROBUSTNESS_DATA_ROOT)")
    serve.set_defaults(func=cmd_serve)
    keys = sub.add_parser("keys", help="manage API keys (on the server: uses its database)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key; prints it once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--scopes", default="read,submit", help="comma-separated: read, "
                        "submit, admin (default read,submit)")
    create.add_argument("--name")
    create.set_defaults(func=cmd_keys)
    listing = keys_sub.add_parser("list", help="list keys (never their secrets)")
    listing.set_defaults(func=cmd_keys)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    revoke.set_defaults(func=cmd_keys)


def _data_root(args) -> None:
    if getattr(args, "data_root", None):
        paths.use_data_root(args.data_root)


def cmd_keys(args) -> int:
    from robustness.errors import SpecError
    from service.keys import create_key, list_keys, revoke_key
    from store.db import Database
    from store.settings import get_settings

    db = Database(get_settings().sqlalchemy_url)
    if args.keys_command == "create":
        try:
            token, record = create_key(db, args.tenant, args.scopes.split(","), args.name)
        except ValueError as exc:
            raise SpecError(str(exc)) from None
        print(f"{record.id}  tenant={record.tenant}  scopes={','.join(record.scopes)}",
              file=sys.stderr)
        print(token)
    elif args.keys_command == "list":
        for r in list_keys(db):
            state = "revoked" if r.revoked_at else "active"
            print(f"{r.id}\t{r.tenant}\t{','.join(r.scopes)}\t{state}\t{r.name or ''}")
    elif not revoke_key(db, args.key_id):
        raise SpecError(f"no active key {args.key_id!r}")
    return 0


def cmd_serve(args) -> int:
    _data_root(args)
    import uvicorn

    from service.app import create_app
    from service.auth import admin_key_file, fingerprint
    from service.settings import get_gateway_settings
    from store.logs import configure_logging

    settings = get_gateway_settings()
    configure_logging(settings.log_format)
    app = create_app(settings)  # migrates the database before a worker starts
    gw = app.state.gw
    base = f"http://{args.host}:{args.port}"
    key_file = admin_key_file(settings)
    # The key itself is printed once, when it is generated; otherwise where to find it.
    if app.state.admin_key_generated:
        shown, export = (f"{app.state.admin_key}  (generated; kept in {key_file}, printed "
                         f"only this once)"), app.state.admin_key
    elif settings.admin_key:
        shown = f"from ROBUSTNESS_ADMIN_KEY ({fingerprint(settings.admin_key)})"
        export = '"$ROBUSTNESS_ADMIN_KEY"'
    else:
        shown = f"in {key_file} ({fingerprint(app.state.admin_key)})"
        export = f'"$(cat {key_file})"'
    lines = [f"robustness service on {base} (docs: {base}/docs)",
             f"  state: {settings.home}  database: {gw.db.engine.url.render_as_string()}",
             f"  broker: {'embedded (SQLite)' if settings.embedded_broker else 'Redis'}",
             f"  admin API key: {shown}"]
    if args.demo:
        from service.demo import register_file, train_demo

        print("training the demo model ...", file=sys.stderr, flush=True)
        weights, metadata, audit = train_demo(paths.named_data_root())
        model_id = register_file(gw.db, gw.store, weights, metadata)
        body = json.dumps({"model_id": model_id, **audit})
        lines += [f"  demo model: {model_id} ({metadata['name']})",
                  "  launch a demo audit:",
                  f"    export KEY={export}",
                  (f"    curl -s -X POST {base}/v1/audits -H \"Authorization: Bearer $KEY\" "
                   f"-H 'Content-Type: application/json' -d '{body}'"),
                  (f"  then: curl -s -H \"Authorization: Bearer $KEY\" {base}/v1/audits/<id>"
                   f"   (and .../report)")]
    supervisor = None if args.no_worker else WorkerSupervisor()
    if supervisor is not None:
        supervisor.start()
        lines.append(f"  worker: child process {supervisor.pid}")
    print("\n".join(lines), flush=True)
    try:
        # Idle keep-alive connections outlive a client's polling gap: a server that closes one
        # just as the client reuses it fails that request (seen under load with the 5 s default).
        # Logging is ours (store.logs): uvicorn's own records go through it, and the access
        # line is service.request_ids', with the request id.
        uvicorn.run(app, host=args.host, port=args.port, log_level="info",
                    timeout_keep_alive=75, log_config=None, access_log=False)
    finally:
        if supervisor is not None:
            supervisor.stop()
    return 0


class WorkerSupervisor(threading.Thread):
    """The embedded mode's worker: a child process (its own process group, so its pool goes
    with it), started again if it dies; its jobs are redelivered by the reconciler."""

    def __init__(self):
        super().__init__(daemon=True, name="worker-supervisor")
        self.stopping = threading.Event()
        self.proc = self._spawn()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @staticmethod
    def _spawn() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "robustness", "worker",
                                 "--exit-with-parent"], env=os.environ.copy(),
                                start_new_session=True)

    def run(self) -> None:
        while not self.stopping.wait(1.0):
            code = self.proc.poll()
            if code is not None and not self.stopping.is_set():
                self.proc = self._spawn()
                print(f"worker exited with {code}; restarted as child process "
                      f"{self.proc.pid}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        self.stopping.set()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
