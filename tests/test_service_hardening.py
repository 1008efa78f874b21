"""Issue 13's probes, performed as an outsider or a tenant would against a real gateway
process (and its worker, and a local receiver, where the attack needs one). Each test
reproduces an attack that succeeded before its fix."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from itertools import pairwise
from pathlib import Path

import pytest

from tests.service_processes import ADMIN_KEY, Service

LIMIT = 20_000_000  # ROBUSTNESS_MAX_UPLOAD_BYTES of the gateway under test
CHUNK = b"\0" * (1 << 20)
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
QUOTAS = {"ROBUSTNESS_MAX_MODELS_PER_TENANT": "2", "ROBUSTNESS_MAX_SCHEDULES_PER_TENANT": "3",
          "ROBUSTNESS_MAX_UNFINISHED_JOBS_PER_TENANT": "2"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """`robustness serve` (gateway and its child worker) whose temporary files go where the
    test can weigh them."""
    home = tmp_path_factory.mktemp("hardening")
    (home / "tmp").mkdir()
    svc = Service(home, {"TMPDIR": str(home / "tmp"),
                         "ROBUSTNESS_MAX_UPLOAD_BYTES": str(LIMIT), **QUOTAS}, split=False)
    try:
        yield svc.start()
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def model_id(gateway, digits_model, tmp_path_factory):
    import json

    import httpx

    from robustness.models import save_state_dict
    from tests.service_processes import METADATA

    path = tmp_path_factory.mktemp("model") / "digits.safetensors"
    save_state_dict(digits_model.net, path)
    with open(path, "rb") as f:
        r = httpx.post(f"{gateway.url}/v1/models", headers=AUTH, timeout=60,
                       files={"file": ("digits.safetensors", f)},
                       data={"metadata": json.dumps(METADATA)})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _disk_bytes(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        try:
            total += path.stat().st_size if path.is_file() else 0
        except FileNotFoundError:  # a spool file deleted while we looked
            pass
    return total


class Weigher(threading.Thread):
    """Samples how many bytes the gateway holds on disk (temporary files, artifact store)."""

    def __init__(self, home: Path):
        super().__init__(daemon=True)
        self.home, self.peak, self.stopped = home, 0, threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.peak = max(self.peak, _disk_bytes(self.home / "tmp")
                            + _disk_bytes(self.home / "artifacts"))
            time.sleep(0.01)

    def __enter__(self) -> Weigher:  # noqa: PYI034
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.join()


def send_until_answered(port: int, path: str, headers: dict[str, str], prefix: bytes,
                        chunked: bool, most: int, timeout: float = 5.0) -> tuple[int, float, int]:
    """POST as an attacker does: the headers, then zeros streamed until the server answers,
    closes, or `most` bytes are out. Returns (status, seconds from the headers to the
    answer, body bytes sent); status 0 if nothing came within `timeout`."""
    sock = socket.create_connection(("127.0.0.1", port))
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items())
    head += "Transfer-Encoding: chunked\r\n" if chunked else ""
    sock.sendall((head + "\r\n").encode())
    started, sent = time.monotonic(), 0

    def frame(data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data) if chunked else data

    def stream() -> None:
        nonlocal sent
        try:
            sock.sendall(frame(prefix))
            while sent < most:
                sock.sendall(frame(CHUNK))
                sent += len(CHUNK)
        except OSError:  # the server answered and closed: what a defended server does
            pass

    sender = threading.Thread(target=stream, daemon=True)
    sender.start()
    sock.settimeout(timeout)
    answer = b""
    try:
        while b"\r\n" not in answer:
            block = sock.recv(4096)
            if not block:
                break
            answer += block
    except (TimeoutError, OSError):
        pass
    elapsed = time.monotonic() - started
    sock.close()
    sender.join(timeout=10)
    status = int(answer.split(b" ")[1]) if answer.startswith(b"HTTP/") else 0
    return status, elapsed, sent


def multipart_upload(boundary: str = "probe-boundary") -> tuple[dict[str, str], bytes]:
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    prefix = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
              f"filename=\"big.safetensors\"\r\nContent-Type: application/octet-stream\r\n\r\n"
              ).encode()
    return headers, prefix


THREE_GB = {"Content-Length": str(3 * 10**9)}


@pytest.mark.parametrize("who, announced, chunked, status", [
    ({}, THREE_GB, False, 401),        # no key: refused before a byte of the body is read
    ({}, {}, True, 401),               # no key, no length
    (AUTH, THREE_GB, False, 413),      # a key, but announcing more than the limit
    (AUTH, {}, True, 413),             # a key and no length: counted as it streams
], ids=["anonymous", "anonymous-chunked", "oversized", "oversized-chunked"])
def test_uploads_are_refused_within_a_second_having_stored_less_than_the_limit(
        gateway, who, announced, chunked, status):
    headers, prefix = multipart_upload()
    with Weigher(gateway.home) as weigher:
        got, seconds, sent = send_until_answered(
            gateway.port, "/v1/models", {**headers, **who, **announced}, prefix, chunked,
            most=4 * LIMIT)
        time.sleep(0.3)  # whatever the gateway spooled is removed once it has answered
        left = _disk_bytes(gateway.home / "tmp") + _disk_bytes(gateway.home / "artifacts")
    assert got == status, gateway.tail()
    assert seconds < 1.0, f"answered after {seconds:.2f} s, having received {sent} bytes"
    assert weigher.peak < LIMIT, f"the gateway held {weigher.peak} bytes on disk"
    assert left == 0
    if status == 401:  # not a byte was spooled for an unknown caller
        assert weigher.peak == 0


@pytest.mark.parametrize("announced, chunked", [({"Content-Length": str(80 * 10**6)}, False),
                                                ({}, True)], ids=["announced", "chunked"])
def test_json_bodies_over_a_mebibyte_are_refused_before_they_are_parsed(
        gateway, announced, chunked):
    """An 80 MB spec (20 M `taus`) was parsed whole before: gateway memory 0.87 → 2.05 GB."""
    prefix = b'{"model_id": "mdl_x", "taus": [' + b"0.5," * 1000
    got, seconds, sent = send_until_answered(
        gateway.port, "/v1/audits", {"Content-Type": "application/json", **AUTH, **announced},
        prefix, chunked, most=80 * 10**6)
    assert (got, seconds < 1.0) == (413, True), (got, seconds, sent)
    assert sent < 20 * 10**6  # cut off near the limit (plus socket buffers), not read whole


@pytest.mark.parametrize("spec, field", [
    ({"taus": [0.5] * 100_000}, "taus"),   # ran before, and was echoed in every job list
    ({"model_id": "m" * 5000}, "model_id"),
    ({"attacks": [{"name": "fgsm", "label": "x" * 1000}]}, "attacks[0].label"),
    ({"dataset": {"name": "tensors", "path": "a/" * 2000}}, "dataset.path"),
], ids=["taus", "model_id", "label", "path"])
def test_spec_lists_and_strings_are_bounded(gateway, spec, field):
    import httpx

    body = {"model_id": "mdl_none", "dataset": {"name": "digits"}, **spec}
    r = httpx.post(f"{gateway.url}/v1/audits", json=body, headers=AUTH, timeout=30)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(f"{field}:"), r.json()["detail"]


def test_the_admin_key_is_printed_only_when_generated(gateway, tmp_path):
    """A configured key ended up in container logs; now logs show a fingerprint."""
    from service.auth import fingerprint

    log = gateway.logs["gateway"].read_text()
    assert ADMIN_KEY not in log
    assert f"admin API key: from ROBUSTNESS_ADMIN_KEY ({fingerprint(ADMIN_KEY)})" in log
    for start in ("first", "second"):  # generated on the first start, then kept in the file
        svc = Service(tmp_path, {"ROBUSTNESS_ADMIN_KEY": ""}, split=True)
        try:
            svc.start(worker=False)
        finally:
            svc.stop()
        log = svc.logs["gateway"].rename(tmp_path / f"{start}.log").read_text()
        key = (tmp_path / "admin.key").read_text().strip()
        assert log.count(key) == (1 if start == "first" else 0), start
    assert f"({fingerprint(key)})" in log


def test_near_duplicate_epsilons_give_exactly_one_adversarial_set(gateway, model_id):
    """With ε [0.1, 0.1000000000001], /adversarial?epsilon=… between them raised a
    ValueError (a 500 and a reset connection): now the nearest ε of the grid answers."""
    import httpx
    from safetensors.torch import load

    from tests.service_processes import finished, wait_for

    grid = [0.1, 0.1000000000001]
    with httpx.Client(base_url=gateway.url, headers=AUTH, timeout=30) as c:
        r = c.post("/v1/audits", json={"model_id": model_id, "attacks": [{"name": "fgsm"}],
                                       "dataset": {"name": "digits", "n": 20},
                                       "epsilons": grid})
        assert r.status_code == 202, r.text
        job = wait_for(c, f"/v1/audits/{r.json()['id']}", finished)
        assert job["status"] == "succeeded", job
        for asked, kept in ((0.1, 0.1), (0.1000000000001, 0.1000000000001),
                            (0.10000000000006, 0.1000000000001)):
            r = c.get(f"/v1/audits/{job['id']}/adversarial",
                      params={"attack": "fgsm", "epsilon": repr(asked)})
            assert r.status_code == 200, r.text
            assert float(load(r.content)["epsilon"]) == kept
        r = c.post("/v1/audits", json={"model_id": model_id, "dataset": {"name": "digits"},
                                       "epsilons": [0.1, 0.1]})
        assert r.status_code == 422 and "ε=0.1 is given more than once" in r.json()["detail"]


def test_a_tenant_admin_manages_its_own_tenant_alone_and_the_operator_every_tenant(gateway):
    """A team-a admin key listed every tenant's keys, minted a default-tenant admin key and
    revoked a team-b key. Now: its own tenant's keys only; the operator's reach is unchanged."""
    import httpx

    def call(method, path, key, **kw):
        return httpx.request(method, f"{gateway.url}{path}", timeout=30,
                             headers={"Authorization": f"Bearer {key}"}, **kw)

    def mint(key, tenant, scopes):
        return call("POST", "/v1/keys", key, json={"tenant": tenant, "scopes": scopes})

    team_a = mint(ADMIN_KEY, "team-a", ["read", "submit", "admin"]).json()
    team_b = mint(ADMIN_KEY, "team-b", ["read"]).json()
    a = team_a["key"]

    # Listing: team-a's keys only.
    listed = call("GET", "/v1/keys", a).json()["items"]
    assert {k["tenant"] for k in listed} == {"team-a"}
    # Minting: for team-a, yes; for the default tenant or team-b, no.
    for tenant in ("default", "team-b"):
        r = mint(a, tenant, ["read", "admin"])
        assert r.status_code == 403 and r.json()["detail"].startswith("tenant:"), r.text
    pipeline = mint(a, "team-a", ["read"])
    assert pipeline.status_code == 201 and pipeline.json()["tenant"] == "team-a"
    # Revoking: team-b's key is not team-a's to revoke (404, as another tenant's model is).
    assert call("DELETE", f"/v1/keys/{team_b['id']}", a).status_code == 404
    assert call("GET", "/v1/models", team_b["key"]).status_code == 200  # still valid
    assert call("DELETE", f"/v1/keys/{pipeline.json()['id']}", a).status_code == 204
    # The service-wide metrics are the operator's.
    assert call("GET", "/metrics", a).status_code == 403
    assert call("GET", "/metrics", ADMIN_KEY).status_code == 200

    # The other direction: the operator sees and manages every tenant's keys.
    tenants = {k["tenant"] for k in call("GET", "/v1/keys", ADMIN_KEY).json()["items"]}
    assert {"team-a", "team-b"} <= tenants
    assert call("DELETE", f"/v1/keys/{team_b['id']}", ADMIN_KEY).status_code == 204
    assert call("GET", "/v1/models", team_b["key"]).status_code == 401


def test_reasons_and_reports_do_not_disclose_server_paths_or_kernel(gateway, model_id):
    """Failure reasons showed the absolute data root, a message said absolute paths were
    allowed (they are refused), and reports carried the kernel string."""
    import platform

    import httpx

    from tests.service_processes import finished, wait_for

    home = str(gateway.home)
    with httpx.Client(base_url=gateway.url, headers=AUTH, timeout=30) as c:
        jobs = {}
        for name, dataset in (("mnist", {"name": "mnist", "n": 10}),
                              ("tensors", {"name": "tensors", "path": "no/such.npz"}),
                              ("digits", {"name": "digits", "n": 10})):
            r = c.post("/v1/audits", json={"model_id": model_id, "dataset": dataset,
                                           "attacks": [{"name": "fgsm"}], "epsilons": [0.1]})
            assert r.status_code == 202, r.text
            jobs[name] = wait_for(c, f"/v1/audits/{r.json()['id']}", finished)
        assert "<data root>/MNIST/raw" in jobs["mnist"]["error"]
        assert "<data root>/no/such.npz not found" in jobs["tensors"]["error"]
        assert "absolute" not in jobs["tensors"]["error"]
        report = c.get(f"/v1/audits/{jobs['digits']['id']}/report")
        assert report.status_code == 200
        r = c.post("/v1/audits", json={"model_id": model_id, "attacks": [{"name": "fgsm"}],
                                       "dataset": {"name": "tensors", "path": "/etc/x.npz"}})
        assert r.status_code == 422 and "relative to the data root" in r.json()["detail"]
    for job in jobs.values():
        assert home not in str(job), job
    assert home not in report.text
    assert report.json()["provenance"]["platform"] == f"{platform.system()} {platform.machine()}"
    assert platform.release() not in report.text


LOOPBACK_SPELLINGS = ["127.0.0.1", "127.1", "[::1]", "0x7f000001", "2130706433",
                      "[::ffff:127.0.0.1]", "localhost", "localhost.", "169.254.169.254",
                      "10.0.0.7", "192.168.1.1", "[fe80::1]", "0.0.0.0", "224.0.0.1"]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_callbacks_to_internal_addresses_are_refused_by_default(gateway, model_id, host):
    """Every spelling of loopback, the metadata address and private ranges reached a receiver
    (a port scanner of the internal network); now each is a 422 at submission."""
    import httpx

    body = {"cron": "0 3 * * *", "callback_url": f"http://{host}:8080/hook",
            "audit": {"model_id": model_id, "dataset": {"name": "digits", "n": 10},
                      "attacks": [{"name": "fgsm"}], "epsilons": [0.1]}}
    r = httpx.post(f"{gateway.url}/v1/schedules", json=body, headers=AUTH, timeout=30)
    assert r.status_code == 422, r.text
    assert "is not a public address" in r.json()["detail"]
    # The same on a job's own callback_url.
    r = httpx.post(f"{gateway.url}/v1/audits", headers=AUTH, timeout=30,
                   json={**body["audit"], "callback_url": body["callback_url"]})
    assert r.status_code == 422 and "is not a public address" in r.json()["detail"], r.text


def test_callback_ports_and_names_resolving_inward_are_refused():
    """Ports of internal services are refused on public hosts, and a name is resolved once
    and every address checked: the connection goes to the checked address."""
    from service.callbacks import Blocked, check_url, resolve_checked
    from service.settings import GatewaySettings

    settings = GatewaySettings(callback_hosts=None)
    with pytest.raises(Blocked, match="port 6379 is not allowed"):
        check_url("http://hooks.example.com:6379/x", settings)
    with pytest.raises(Blocked, match="has no valid port"):
        check_url("http://hooks.example.com:99999/x", settings)
    with pytest.raises(Blocked, match="credentials in the URL"):
        check_url("http://user:secret@hooks.example.com/x", settings)
    with pytest.raises(Blocked, match="not a public address"):  # 6to4 of 10.0.0.1
        check_url("http://[2002:a00:1::]/x", settings)
    check_url("https://hooks.example.com/x", settings)  # public name, allowed port: passes
    name = socket.gethostname()  # resolves to 127.0.0.1 on these machines (/etc/hosts)
    inward = {a[4][0] for a in socket.getaddrinfo(name, 80)}
    import ipaddress

    if all(ipaddress.ip_address(a).is_global for a in inward):
        pytest.fail(f"{name} resolves to {inward}: pick a name that resolves inward")
    with pytest.raises(Blocked, match="which is not public"):
        resolve_checked(f"http://{name}:8080/hook", settings)
    allowlisted = GatewaySettings(callback_hosts=name)  # the operator's explicit choice
    assert resolve_checked(f"http://{name}:9/hook", allowlisted)[0] in inward


class Trickler(threading.Thread):
    """A callback receiver that reads the request, then answers one byte every 3 s, forever
    (its headers never end). Records when each connection opened and closed."""

    def __init__(self):
        super().__init__(daemon=True)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections: list[list[float]] = []

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self.trickle, args=(conn,), daemon=True).start()

    def trickle(self, conn: socket.socket) -> None:
        times = [time.monotonic()]
        self.connections.append(times)
        answer = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: a\r\n" * 1000
        try:
            conn.recv(65536)
            for byte in answer:
                conn.sendall(bytes([byte]))
                time.sleep(3)
        except OSError:
            pass
        finally:
            times.append(time.monotonic())
            conn.close()


def test_a_trickling_callback_receiver_holds_up_no_schedule(tmp_path, digits_model):
    """A receiver trickling a byte every 3 s held the one housekeeping thread, so no tenant's
    schedule fired for minutes. Now a delivery has an overall deadline, runs on the
    callbacks' own pool, and another tenant's schedule fires on the minute meanwhile."""
    import json
    from datetime import datetime

    import httpx

    from robustness.models import save_state_dict
    from tests.service_processes import METADATA

    trickler = Trickler()
    trickler.start()
    svc = Service(tmp_path, {"ROBUSTNESS_CALLBACK_HOSTS": "127.0.0.1",
                             "ROBUSTNESS_CALLBACK_SECONDS": "3",
                             "ROBUSTNESS_CALLBACK_ATTEMPTS": "3",
                             "ROBUSTNESS_CALLBACK_BACKOFF_SECONDS": "0",
                             "ROBUSTNESS_MIN_SCHEDULE_MINUTES": "1"}, split=False)
    try:
        svc.start()
        c = httpx.Client(base_url=svc.url, headers=AUTH, timeout=30)
        other = c.post("/v1/keys", json={"tenant": "team-b", "scopes": ["read", "submit"]})
        b = httpx.Client(base_url=svc.url, timeout=30,
                         headers={"Authorization": f"Bearer {other.json()['key']}"})
        save_state_dict(digits_model.net, tmp_path / "m.safetensors")
        schedule_ids = []
        for client in (c, b):
            with open(tmp_path / "m.safetensors", "rb") as f:
                model = client.post("/v1/models", files={"file": ("m.safetensors", f)},
                                    data={"metadata": json.dumps(METADATA)}).json()["id"]
            body = {"cron": "* * * * *",
                    "audit": {"model_id": model, "dataset": {"name": "digits", "n": 10},
                              "attacks": [{"name": "fgsm"}], "epsilons": [0.1]}}
            if client is c:
                body["callback_url"] = f"http://127.0.0.1:{trickler.port}/hook"
            r = client.post("/v1/schedules", json=body)
            assert r.status_code == 201, r.text
            schedule_ids.append(r.json()["id"])
        trickled, steady = schedule_ids
        first = datetime.fromisoformat(c.get(f"/v1/schedules/{trickled}").json()["next_run_at"])
        # Wait for the first firing's audit to end and its callback to start trickling.
        deadline = time.monotonic() + (first - datetime.now(first.tzinfo)).total_seconds() + 60
        while not trickler.connections and time.monotonic() < deadline:
            time.sleep(0.5)
        assert trickler.connections, f"no callback came\n{svc.tail()}"
        # The next minute: team-b's schedule fires on time although the receiver trickles.
        second = datetime.fromisoformat(b.get(f"/v1/schedules/{steady}").json()["next_run_at"])
        wait = (second - datetime.now(second.tzinfo)).total_seconds()
        time.sleep(max(0.0, wait) + 6)
        fired = b.get(f"/v1/schedules/{steady}").json()
        assert fired["last_run_at"] is not None and \
            datetime.fromisoformat(fired["last_run_at"]) >= second, (fired, svc.tail())
        # Every attempt was cut at its deadline; after three the tenant sees only "failed".
        job = c.get(f"/v1/audits?schedule_id={trickled}").json()["items"][-1]
        assert job["callback"] == {"url": f"http://127.0.0.1:{trickler.port}/hook",
                                   "status": "failed", "attempts": 3}, job
        # (Attempt k+1 opens once attempt k is cut: the gaps show the 3 s deadline held.)
        starts = [t[0] for t in trickler.connections[:3]]
        assert all(0 < later - earlier < 3 + 2 for earlier, later in pairwise(starts)), \
            trickler.connections
    finally:
        svc.stop()
        trickler.server.close()


def test_training_budgets_count_the_monitors(gateway):
    """Counted at 1.3e6 passes and queued, this training would make about 2.6e10 (its PGD
    monitor: 1296 held-out examples × 1000 steps × 20 restarts × 1000 epochs)."""
    import httpx

    spec = {"architecture": "madry_mnist", "dataset": {"name": "digits"}, "method": "fgsm",
            "epsilon": 0.1, "epochs": 1000,
            "validation": {"n": 1296, "steps": 1000, "restarts": 20}}
    r = httpx.post(f"{gateway.url}/v1/trainings", json=spec, headers=AUTH, timeout=30)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("budget: this training needs about 2.59e+10"), r.text


def test_tenant_quotas_and_the_shortest_cron_interval(gateway, digits_model, tmp_path):
    """300 schedules were created in 3.6 s, every minute each. Now a tenant holds at most so
    many models, schedules and unfinished jobs, and a schedule fires every 5 min at most."""
    import json

    import httpx

    from robustness.models import save_state_dict
    from tests.service_processes import METADATA

    key = httpx.post(f"{gateway.url}/v1/keys", headers=AUTH, timeout=30,
                     json={"tenant": "team-q", "scopes": ["read", "submit"]}).json()["key"]
    q = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"},
                     timeout=60)
    save_state_dict(digits_model.net, tmp_path / "m.safetensors")

    def upload():
        with open(tmp_path / "m.safetensors", "rb") as f:
            return q.post("/v1/models", files={"file": ("m.safetensors", f)},
                          data={"metadata": json.dumps(METADATA)})

    models = [upload() for _ in range(3)]
    assert [r.status_code for r in models] == [201, 201, 409], models[-1].text
    assert "ROBUSTNESS_MAX_MODELS_PER_TENANT" in models[-1].json()["detail"]
    model = models[0].json()["id"]
    audit = {"model_id": model, "dataset": {"name": "digits", "n": 10},
             "attacks": [{"name": "fgsm"}], "epsilons": [0.1]}
    r = q.post("/v1/schedules", json={"cron": "* * * * *", "audit": audit})
    assert r.status_code == 422 and r.json()["detail"].startswith("cron:"), r.text
    r = q.post("/v1/schedules", json={"cron": "0,2 3 * * *", "audit": audit})
    assert r.status_code == 422 and "2 min apart" in r.json()["detail"], r.text
    r = q.post("/v1/schedules", json={"cron": "* * 29 2 *", "audit": audit})  # once a leap day
    assert r.status_code == 422 and "1 min apart" in r.json()["detail"], r.text
    created = [q.post("/v1/schedules", json={"cron": f"{m} 3 * * *", "audit": audit})
               for m in (0, 10, 20, 30)]
    assert [r.status_code for r in created] == [201, 201, 201, 409], created[-1].text
    # Unfinished jobs: two long audits at once, the third waits its turn.
    slow = {**audit, "dataset": {"name": "digits", "n": 500},
            "attacks": [{"name": "pgd", "steps": 200, "restarts": 5}]}
    jobs = [q.post("/v1/audits", json=slow) for _ in range(3)]
    assert [r.status_code for r in jobs] == [202, 202, 429], jobs[-1].text
    assert jobs[-1].headers["Retry-After"] == "60"
    assert "ROBUSTNESS_MAX_UNFINISHED_JOBS_PER_TENANT" in jobs[-1].json()["detail"]
    for r in jobs[:2]:
        q.post(f"/v1/audits/{r.json()['id']}/cancel")
    # Another tenant is not held back by team-q's quotas.
    r = httpx.post(f"{gateway.url}/v1/audits", json={**audit, "model_id": "mdl_x"},
                   headers=AUTH, timeout=30)
    assert r.status_code == 422 and r.json()["detail"].startswith("model_id:"), r.text


# Every operation of the gateway and the scope a key needs for it (None: anyone; "operator":
# an admin key of the default tenant). A new route fails the sweep until it is listed here.
ROUTES = {
    ("POST", "/v1/models"): "submit", ("GET", "/v1/models"): "read",
    ("GET", "/v1/models/{model_id}"): "read", ("DELETE", "/v1/models/{model_id}"): "submit",
    ("POST", "/v1/audits"): "submit", ("GET", "/v1/audits"): "read",
    ("GET", "/v1/audits/{audit_id}"): "read", ("POST", "/v1/audits/{audit_id}/cancel"): "submit",
    ("GET", "/v1/audits/{audit_id}/report"): "read",
    ("GET", "/v1/audits/{audit_id}/report.html"): "read",
    ("GET", "/v1/audits/{audit_id}/compare/{other_id}"): "read",
    ("GET", "/v1/audits/{audit_id}/compare/{other_id}.html"): "read",
    ("GET", "/v1/audits/{audit_id}/examples"): "read",
    ("GET", "/v1/audits/{audit_id}/adversarial"): "read",
    ("POST", "/v1/trainings"): "submit", ("GET", "/v1/trainings"): "read",
    ("GET", "/v1/trainings/{training_id}"): "read",
    ("GET", "/v1/trainings/{training_id}/report.html"): "read",
    ("POST", "/v1/trainings/{training_id}/cancel"): "submit",
    ("POST", "/v1/certifications"): "submit", ("GET", "/v1/certifications"): "read",
    ("GET", "/v1/certifications/{certification_id}"): "read",
    ("POST", "/v1/certifications/{certification_id}/cancel"): "submit",
    ("GET", "/v1/certifications/{certification_id}/report"): "read",
    ("GET", "/v1/certifications/{certification_id}/report.html"): "read",
    ("GET", "/v1/audits/{audit_id}/deliveries"): "read",
    ("GET", "/v1/trainings/{training_id}/deliveries"): "read",
    ("GET", "/v1/certifications/{certification_id}/deliveries"): "read",
    ("GET", "/v1/webhooks/secret"): "admin",
    ("DELETE", "/v1/audits/{audit_id}"): "submit",
    ("DELETE", "/v1/trainings/{training_id}"): "submit",
    ("DELETE", "/v1/certifications/{certification_id}"): "submit",
    ("POST", "/v1/schedules"): "submit", ("GET", "/v1/schedules"): "read",
    ("GET", "/v1/schedules/{schedule_id}"): "read",
    ("DELETE", "/v1/schedules/{schedule_id}"): "submit",
    ("GET", "/v1/keys"): "admin", ("POST", "/v1/keys"): "admin",
    ("DELETE", "/v1/keys/{key_id}"): "admin",
    ("GET", "/v1/health"): None, ("GET", "/metrics"): "operator",
}


def test_every_route_refuses_no_key_a_missing_scope_and_another_tenants_ids(
        gateway, digits_model, tmp_path):
    import json

    import httpx

    from robustness.models import save_state_dict
    from tests.service_processes import METADATA

    schema = httpx.get(f"{gateway.url}/openapi.json", timeout=30).json()
    served = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}
    assert served == set(ROUTES)

    def request(method, path, key=None, **kw):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.request(method, f"{gateway.url}{path}", headers=headers, timeout=60, **kw)

    def mint(tenant, scopes):
        return request("POST", "/v1/keys", ADMIN_KEY,
                       json={"tenant": tenant, "scopes": scopes}).json()

    full_a, full_b = (mint(t, ["read", "submit", "admin"]) for t in ("sweep-a", "sweep-b"))
    single = {scope: mint("sweep-a", [scope])["key"] for scope in ("read", "submit", "admin")}
    # Tenant a's resources, whose ids tenant b then tries.
    save_state_dict(digits_model.net, tmp_path / "m.safetensors")
    with open(tmp_path / "m.safetensors", "rb") as f:
        model = request("POST", "/v1/models", full_a["key"],
                        files={"file": ("m.safetensors", f)},
                        data={"metadata": json.dumps(METADATA)}).json()["id"]
    audit = {"model_id": model, "dataset": {"name": "digits", "n": 10},
             "attacks": [{"name": "fgsm"}], "epsilons": [0.1]}
    from tests.service_processes import finished

    audit_id = request("POST", "/v1/audits", full_a["key"], json=audit).json()["id"]
    deadline = time.monotonic() + 120  # (two unfinished jobs per tenant here)
    while not finished(request("GET", f"/v1/audits/{audit_id}", full_a["key"]).json()):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    ids = {"model_id": model, "audit_id": audit_id, "other_id": audit_id,
           "training_id": request("POST", "/v1/trainings", full_a["key"], json={
               "architecture": "madry_mnist", "dataset": {"name": "digits", "n": 100},
               "method": "standard", "epochs": 1, "validation": {"n": 20}}).json()["id"],
           "certification_id": request("POST", "/v1/certifications", full_a["key"], json={
               "model_id": model, "dataset": {"name": "digits", "n": 2}, "sigma": 0.25,
               "n": 100, "attack": None}).json()["id"],
           "schedule_id": request("POST", "/v1/schedules", full_a["key"], json={
               "cron": "0 3 * * *", "audit": audit}).json()["id"],
           "key_id": full_a["id"]}
    query = {"attack": "fgsm", "epsilon": 0.1}
    for (method, path), needs in ROUTES.items():
        if needs is None:
            assert request(method, path).status_code == 200
            continue
        # No key, a bad key: 401, before any body would be read.
        for key in (None, "rbk_nope.nope"):
            r = request(method, path.format(**dict.fromkeys(ids, "x")), key, params=query)
            assert r.status_code == 401, (method, path, r.text)
        # Each scope alone: 403 where it is not the one needed. Where it is, a missing id
        # (404) or an empty body (422) shows the key got past authorization.
        for scope, key in single.items():
            r = request(method, path.format(**dict.fromkeys(ids, "missing")), key,
                        params=query, json={} if method == "POST" else None)
            if scope == needs:
                assert r.status_code in (200, 404, 422), (method, path, scope, r.text)
            else:
                assert r.status_code == 403, (method, path, scope, r.text)
        # Another tenant's ids: 404, as if they did not exist.
        if "{" in path:
            r = request(method, path.format(**ids), full_b["key"], params=query)
            assert r.status_code == 404, (method, path, r.text)
    # Nothing of tenant a's was touched by tenant b.
    assert request("GET", f"/v1/models/{model}", full_a["key"]).status_code == 200
    assert request("GET", "/metrics", ADMIN_KEY).status_code == 200


def test_a_callback_resolves_once_and_connects_to_the_checked_address(monkeypatch):
    """DNS rebinding needs a second lookup (one to check, one to connect); there is one, and
    the request goes to the address it returned, with the URL's host in `Host`."""
    from service.callbacks import Blocked, post_json
    from service.settings import GatewaySettings
    from tests.service_processes import Receiver

    lookups = []
    real = socket.getaddrinfo

    def counted(host, *args, **kw):
        lookups.append(host)
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", counted)
    with Receiver() as hook:
        name, port = socket.gethostname(), hook.port
        # Not allowlisted: the name resolves inward, so the delivery is blocked.
        with pytest.raises(Blocked, match="which is not public"):
            post_json(f"http://{name}:8080/hook", b"{}", GatewaySettings(), 5)
        lookups.clear()
        allowed = GatewaySettings(callback_hosts=name)
        assert post_json(f"http://{name}:{port}/hook/a b?x=1", b'{"id": "job_1"}', allowed,
                         5) == 204
        assert lookups == [name, "127.0.0.1"]  # the name once, then the checked literal
        assert hook.received == [("/hook/a%20b?x=1", f"{name}:{port}", b'{"id": "job_1"}')]


class Hang(__import__("torch").nn.Module):
    """A checkpoint whose own code never returns (TorchScript: it runs at load and at every
    forward pass)."""

    def forward(self, x):
        y = x.flatten(1)[:, :10] * 0.0
        i = 0
        while i < 10**15:
            y = y + 0.0
            i += 1
        return y


def _sandboxes_of(home: Path) -> set[int]:
    """Pids of the sandbox processes (workers.sandbox) that serve the service at `home`."""
    found = set()
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except (OSError, ValueError):
            continue
        if b"workers.sandbox_child" in cmdline and \
                f"ROBUSTNESS_HOME={home}".encode() in environ.split(b"\0"):
            found.add(int(proc.name))
    return found


def test_a_model_that_never_returns_is_stopped_on_cancel_and_at_the_time_limit(
        tmp_path, digits_model):
    """A TorchScript model looping in `forward` stayed "running / loading model" for minutes
    after its cancel, and one that never returns held its worker until Celery's hard limit,
    after which the job was redelivered. Now the model runs in a sandbox process that is
    killed a grace period after the cancel or the time limit; the job ends with a reason, is
    never run again, and the worker goes on to the next job. A sandbox that dies fails its
    job with a reason too."""
    import json

    import httpx
    import torch

    from robustness.models import save_state_dict
    from tests.service_processes import METADATA, finished, wait_for

    torch.jit.script(Hang()).save(str(tmp_path / "hang.pt"))
    save_state_dict(digits_model.net, tmp_path / "honest.safetensors")
    svc = Service(tmp_path / "home", {"ROBUSTNESS_AUDIT_TIME_LIMIT": "25",
                                      "ROBUSTNESS_STOP_GRACE_SECONDS": "3"}, split=False)
    (tmp_path / "home").mkdir()
    try:
        svc.start()
        c = httpx.Client(base_url=svc.url, headers=AUTH, timeout=30)
        models = {}
        for name, meta in (("hang.pt", {"input_shape": [1, 8, 8]}),
                           ("honest.safetensors", METADATA)):
            with open(tmp_path / name, "rb") as f:
                r = c.post("/v1/models", files={"file": (name, f)},
                           data={"metadata": json.dumps(meta)})
            assert r.status_code == 201, r.text
            models[name] = r.json()["id"]
        spec = {"dataset": {"name": "digits", "n": 20}, "attacks": [{"name": "fgsm"}],
                "epsilons": [0.1]}

        def submit(model: str) -> str:
            r = c.post("/v1/audits", json={"model_id": models[model], **spec})
            assert r.status_code == 202, r.text
            return r.json()["id"]

        # An honest audit that reports progress without pause stops at its next batch.
        r = c.post("/v1/audits", json={"model_id": models["honest.safetensors"],
                                       "dataset": {"name": "digits", "n": 400},
                                       "attacks": [{"name": "pgd", "steps": 20}],
                                       "epsilons": [0.1, 0.2, 0.3], "batch_size": 1})
        busy = r.json()["id"]
        wait_for(c, f"/v1/audits/{busy}", lambda j: j["progress"]["completed"] > 5, timeout=90)
        asked = time.monotonic()
        assert c.post(f"/v1/audits/{busy}/cancel").status_code == 202
        job = wait_for(c, f"/v1/audits/{busy}", finished, timeout=30)
        assert job["status"] == "cancelled" and job["error"] == "cancelled", job
        assert time.monotonic() - asked < 3, job  # within a heartbeat and a batch, unkilled
        assert 0 < job["progress"]["fraction"] < 1, job

        # Cancelled while its model loops: ended within seconds, its process gone.
        hung = submit("hang.pt")
        wait_for(c, f"/v1/audits/{hung}", lambda j: j["progress"]["phase"] == "loading model",
                 timeout=90)
        time.sleep(2)
        looping = _sandboxes_of(svc.home)
        assert len(looping) == 1, looping
        asked = time.monotonic()
        assert c.post(f"/v1/audits/{hung}/cancel").status_code == 202
        job = wait_for(c, f"/v1/audits/{hung}", finished, timeout=30)
        took = time.monotonic() - asked
        assert job["status"] == "cancelled" and took < 3 + 10, (job, took)
        assert "killed" in job["error"], job
        assert not looping & _sandboxes_of(svc.home), "the looping process outlived its job"

        # Left alone: failed at the 25 s time limit (plus the 3 s grace), not at Celery's.
        hung = submit("hang.pt")
        job = wait_for(c, f"/v1/audits/{hung}", finished, timeout=90)
        assert job["status"] == "failed", job
        assert job["error"].startswith("time limit of 25 s exceeded") and \
            "killed" in job["error"], job
        assert 25 <= job["seconds"] < 25 + 3 + 10, job

        # A sandbox that dies (the OOM killer, a crash in native code) fails its job at once.
        died = submit("hang.pt")
        wait_for(c, f"/v1/audits/{died}", lambda j: j["progress"]["phase"] == "loading model",
                 timeout=90)
        for pid in _sandboxes_of(svc.home):
            os.kill(pid, signal.SIGKILL)
        job = wait_for(c, f"/v1/audits/{died}", finished, timeout=30)
        assert job["status"] == "failed" and "ended unexpectedly (killed by SIGKILL" in \
            job["error"], job

        # The worker goes on: an honest audit succeeds, and no hung job ran again.
        honest = wait_for(c, f"/v1/audits/{submit('honest.safetensors')}", finished, timeout=90)
        assert honest["status"] == "succeeded", (honest, svc.tail())
        time.sleep(8)  # beyond the test service's 6 s lease: a redelivery would show by now
        for listed in c.get("/v1/audits").json()["items"]:
            if listed["model_id"] == models["hang.pt"]:
                assert listed["status"] in ("cancelled", "failed"), listed
                assert listed["attempts"] == 1, listed
    finally:
        svc.stop()
    deadline = time.monotonic() + 10  # and no sandbox outlives its worker
    while _sandboxes_of(svc.home) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _sandboxes_of(svc.home)
