"""Completion callbacks: POSTed by the gateway (workers may have no way out of their network),
on a small pool of their own, each with an overall deadline, to public addresses only.

A tenant chooses the URL, so a callback is a request the gateway makes on a stranger's
behalf. Three rules keep it from being more:

- **Public addresses only**: the name is resolved, every address is checked (loopback,
  private, link-local, cloud metadata, multicast, reserved and unspecified are refused,
  IPv4-mapped IPv6 included), and the connection goes to the checked address. A second
  lookup, which DNS rebinding would answer differently, never happens. Ports other than
  `ROBUSTNESS_CALLBACK_PORTS` [80, 443, 8080, 8443] are refused too. An operator who sets
  `ROBUSTNESS_CALLBACK_HOSTS` allows those hosts alone, internal ones included, on any port.
- **An overall deadline** (`ROBUSTNESS_CALLBACK_SECONDS` [10]): connect, send and the status
  line together, however slowly a receiver trickles its answer.
- **A coarse outcome**: the tenant sees `delivered`, `failed` or `blocked`, and per attempt
  (`GET …/{id}/deliveries`) the receiver's HTTP status or one of a few coarse failures ("no
  answer within the deadline", "could not connect"), never the exception text, which would
  make the gateway a port scanner of what it can reach. The gateway's log keeps the detail.

Deliveries are signed (`service.webhooks`, Standard Webhooks) and retried with exponential
backoff: `ROBUSTNESS_CALLBACK_ATTEMPTS` [8] attempts, waiting `ROBUSTNESS_CALLBACK_BACKOFF_SECONDS`
[5] after the first failure and twice as long after each next one. Every attempt is recorded.

The request is written by hand over a socket (TLS with the URL's host name for SNI and
certificate checks): only a socket the gateway opened itself can be closed at a deadline.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import urlsplit

import certifi
import httpx
from sqlalchemy import or_, select, update

from service.webhooks import signature_headers, tenant_secret
from store.db import FINAL_STATES, CallbackDeliveryRecord, JobRecord, utcnow
from store.logs import job_context
from store.transitions import as_utc

log = logging.getLogger(__name__)
DEFAULT_PORTS = "80,443,8080,8443"
# What a tenant sees of a delivery; the stored value is one of these.
DELIVERED, FAILED, BLOCKED = "delivered", "failed", "blocked"
RETRYING = "retrying"  # an attempt that failed with more to come (delivery rows only)
METADATA_ADDRESSES = {ipaddress.ip_address("169.254.169.254"),
                      ipaddress.ip_address("fd00:ec2::254")}


class Blocked(Exception):
    """The URL points where callbacks may not go; retrying will not help."""


def _allowed_hosts(settings) -> set[str]:
    return {h.strip().lower() for h in (settings.callback_hosts or "").split(",") if h.strip()}


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        # IPv4 inside IPv6 (mapped, 6to4, Teredo's server and client): the IPv4 decides too.
        inner = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
        if any(v4 is not None and not _public(v4) for v4 in inner):
            return False
    return not (address in METADATA_ADDRESSES or address.is_private or address.is_loopback
                or address.is_link_local or address.is_multicast or address.is_reserved
                or address.is_unspecified or not address.is_global)


def _literal_address(host: str):
    """The address a host name spells by itself (`127.1`, `0x7f000001`, `2130706433` and
    `[::ffff:127.0.0.1]` included, as the C resolver reads them), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:
        return ipaddress.ip_address(socket.inet_aton(host))  # IPv4 shorthands
    except (OSError, ValueError):
        return None


def check_url(url: str, settings) -> None:
    """At submission: refuse what is refused whatever DNS says (a host not allowlisted, an
    address literal that is not public, a port not allowed). Names are checked again,
    resolved, at delivery."""
    host, port = _host_port(url)
    allowed = _allowed_hosts(settings)
    if allowed:
        if host not in allowed:
            raise Blocked(f"callback_url: host {host!r} is not among the allowed callback "
                          f"hosts (ROBUSTNESS_CALLBACK_HOSTS)")
        return
    address = _literal_address(host)
    if host == "localhost" or host.endswith(".localhost") or (
            address is not None and not _public(address)):
        raise Blocked(f"callback_url: {host!r} is not a public address (set "
                      f"ROBUSTNESS_CALLBACK_HOSTS to allow an internal receiver)")
    ports = {int(p) for p in settings.callback_ports.split(",") if p.strip()}
    if port not in ports:
        raise Blocked(f"callback_url: port {port} is not allowed (ROBUSTNESS_CALLBACK_PORTS: "
                      f"{settings.callback_ports})")


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise Blocked("callback_url: credentials in the URL are not sent (and would be logged); "
                      "put a secret in the path or query instead")
    try:
        port = parts.port
    except ValueError:  # httpx accepts http://host:99999/
        raise Blocked(f"callback_url: {url!r} has no valid port") from None
    host = (parts.hostname or "").lower().rstrip(".")
    return host, port or (443 if parts.scheme == "https" else 80)


def _resolve(host: str, port: int, seconds: float) -> list:
    """getaddrinfo within `seconds`: the system resolver has no timeout of its own, and an
    attacker's name server that never answers must not hold a delivery past its deadline."""
    answer: list = []

    def lookup() -> None:
        try:
            answer.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            answer.append(exc)

    thread = threading.Thread(target=lookup, daemon=True, name="callback-dns")
    thread.start()
    thread.join(seconds)
    if not answer:
        raise TimeoutError(f"resolving {host!r} took longer than the deadline")
    if isinstance(answer[0], OSError):
        raise OSError(f"cannot resolve {host!r}: {answer[0]}")
    return answer[0]


def resolve_checked(url: str, settings, seconds: float = 10.0) -> tuple[str, int]:
    """The address to connect to: the URL's host resolved once, every answer public (or the
    host allowlisted)."""
    check_url(url, settings)
    host, port = _host_port(url)
    answers = _resolve(host, port, seconds)
    addresses = [ipaddress.ip_address(a[4][0].split("%")[0]) for a in answers]
    if not _allowed_hosts(settings):
        bad = [str(a) for a in addresses if not _public(a)]
        if bad:
            raise Blocked(f"{host} resolves to {', '.join(bad)}, which is not public")
    return str(addresses[0]), port


def post_json(url: str, payload: bytes, settings, deadline_seconds: float,
              headers: dict[str, str] | None = None) -> int:
    """POST the JSON `payload` and return the status code, all within `deadline_seconds`."""
    deadline = time.monotonic() + deadline_seconds

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no answer within the {deadline_seconds:g} s deadline")
        return remaining

    address, port = resolve_checked(url, settings, left())
    target = httpx.URL(url)  # percent-encoded path and query, IDNA (punycode) host
    sock = socket.create_connection((address, port), timeout=left())
    try:
        if target.scheme == "https":
            sock.settimeout(left())
            sock = ssl.create_default_context(cafile=certifi.where()).wrap_socket(
                sock, server_hostname=target.host)
        host = b"[%s]" % target.raw_host if b":" in target.raw_host else target.raw_host
        host += b":%d" % target.port if target.port else b""
        extra = b"".join(f"{k}: {v}\r\n".encode("ascii") for k, v in (headers or {}).items())
        head = (b"POST " + target.raw_path + b" HTTP/1.1\r\nHost: " + host + b"\r\n"
                b"User-Agent: robustness-callbacks\r\nContent-Type: application/json\r\n"
                + extra + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(payload))
        sock.settimeout(left())
        sock.sendall(head + payload)
        answer = b""
        while b"\r\n" not in answer:  # only the status line matters
            sock.settimeout(left())
            block = sock.recv(1024)
            if not block:
                break
            answer += block
            if len(answer) > 8192:
                break
        status_line = answer.split(b"\r\n", 1)[0].split()
        if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/") \
                or not status_line[1].isdigit():
            raise OSError("the receiver did not answer with an HTTP status line")
        return int(status_line[1])
    finally:
        sock.close()


class CallbackSender:
    """Claims due deliveries (one attempt at a time per job) and runs them on its own pool,
    so a slow receiver holds one of its threads for at most the deadline, and nothing else."""

    def __init__(self, gw, threads: int = 4):
        self.gw = gw
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="callback")
        self.in_flight: set[str] = set()
        self.lock = threading.Lock()

    def dispatch(self) -> int:
        """Start every due delivery not already in flight; returns how many started."""
        now = utcnow()
        with self.gw.db.session() as s:
            pending = list(s.execute(select(JobRecord).where(
                JobRecord.callback_url.is_not(None), JobRecord.status.in_(FINAL_STATES),
                JobRecord.callback_status.is_(None),
                or_(JobRecord.callback_next_at.is_(None),
                    JobRecord.callback_next_at <= now))).scalars())
        started = 0
        for job in pending:
            if job.callback_attempts >= self.gw.settings.callback_attempts:
                # Its last attempt was claimed, then lost (a gateway stopped mid-delivery).
                with self.lock:
                    lost = job.id not in self.in_flight
                if lost:
                    self._record(job.id, FAILED)
                continue
            with self.lock:
                if job.id in self.in_flight:
                    continue
                self.in_flight.add(job.id)
            if not self._claim(job):
                with self.lock:
                    self.in_flight.discard(job.id)
                continue
            try:
                self.pool.submit(self._deliver, job, job.callback_attempts + 1)
            except RuntimeError:  # the gateway is stopping; the next one takes it up
                return started
            started += 1
        return started

    def _record(self, job_id: str, outcome: str) -> None:
        with self.gw.db.session.begin() as s:
            s.execute(update(JobRecord).where(JobRecord.id == job_id,
                                              JobRecord.callback_status.is_(None))
                      .values(callback_status=outcome))

    def _claim(self, job: JobRecord) -> bool:
        """Count this attempt first (a conditional UPDATE): one gateway makes it. The claim
        also moves the next due time past this attempt's deadline, so no gateway (this one
        included, from a listing read before the attempt ended) starts another meanwhile."""
        lease = utcnow() + timedelta(seconds=self.gw.settings.callback_seconds + 5)
        with self.gw.db.session.begin() as s:
            return s.execute(update(JobRecord).where(
                JobRecord.id == job.id, JobRecord.callback_status.is_(None),
                JobRecord.callback_attempts == job.callback_attempts)
                .values(callback_attempts=job.callback_attempts + 1,
                        callback_next_at=lease)).rowcount == 1

    def message(self, job: JobRecord) -> tuple[str, bytes]:
        """The delivery's Standard Webhooks message: its id (the same on every attempt, so a
        receiver can drop a duplicate) and the body `{type, timestamp, data}`, data being
        the job as `GET /v1/<jobs>/{id}` shows it."""
        from service.views import job_view  # views shows this module's statuses

        event_at = as_utc(job.finished_at or job.created_at)
        body = {"type": f"{job.kind}.{job.status}",
                "timestamp": event_at.isoformat().replace("+00:00", "Z"),
                "data": job_view(job)}
        return f"{job.id}.{job.status}", json.dumps(body).encode()

    def _deliver(self, job: JobRecord, attempt: int) -> None:
        with job_context(job.id, job.request_id):
            self._attempt(job, attempt)

    def _attempt(self, job: JobRecord, attempt: int) -> None:
        settings = self.gw.settings
        started, clock = utcnow(), time.monotonic()
        message_id, payload = self.message(job)
        try:
            try:
                secret = tenant_secret(self.gw.db, job.tenant, settings.webhook_secret)
                headers = signature_headers(secret, message_id, payload.decode(), started)
                if job.request_id:
                    headers["X-Request-ID"] = job.request_id
                code = post_json(job.callback_url, payload, settings,
                                 settings.callback_seconds, headers)
                outcome = DELIVERED if 200 <= code < 300 else None
                detail = shown = f"HTTP {code}"
            except Blocked as exc:
                # The reason may name what the host resolved to: the log keeps it.
                outcome, detail = BLOCKED, str(exc)
                shown = "blocked: the URL is not one callbacks may reach"
            except Exception as exc:  # noqa: BLE001 - any failure of the receiver is an attempt
                outcome, detail = None, f"{type(exc).__name__}: {exc}"
                shown = _coarse(exc)
            final = outcome is not None or attempt >= settings.callback_attempts
            if outcome is None and final:
                outcome = FAILED
            self._log_attempt(job, attempt, message_id, started, time.monotonic() - clock,
                              outcome or RETRYING, shown, final)
            if outcome != DELIVERED:
                log.warning("callback of %s to %s, attempt %d: %s", job.id, job.callback_url,
                            attempt, detail)
        except Exception:
            log.exception("callback of %s failed to record", job.id)
        finally:
            with self.lock:
                self.in_flight.discard(job.id)

    def _log_attempt(self, job: JobRecord, attempt: int, message_id: str, started, seconds: float,
                     outcome: str, shown: str, final: bool) -> None:
        """The attempt's row, and either the job's final outcome or when the next is due."""
        backoff = self.gw.settings.callback_backoff_seconds * 2 ** (attempt - 1)
        with self.gw.db.session.begin() as s:
            s.add(CallbackDeliveryRecord(job_id=job.id, attempt=attempt, message_id=message_id,
                                         started_at=started, seconds=seconds, outcome=outcome,
                                         detail=shown[:500]))
            values = {"callback_status": outcome} if final else \
                {"callback_next_at": utcnow() + timedelta(seconds=backoff)}
            s.execute(update(JobRecord).where(JobRecord.id == job.id,
                                              JobRecord.callback_status.is_(None))
                      .values(**values))

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _coarse(exc: Exception) -> str:
    """What a tenant may see of a failed attempt: the kind of failure, not its text."""
    if isinstance(exc, TimeoutError | socket.timeout):
        return "no answer within the deadline"
    if isinstance(exc, ssl.SSLError):
        return "TLS handshake or certificate check failed"
    if isinstance(exc, ConnectionError):
        return "could not connect, or the connection was cut"
    if "HTTP status line" in str(exc):
        return "the receiver did not answer with an HTTP status line"
    return "could not be delivered"


def deliveries(db, job_id: str) -> list[dict]:
    with db.session() as s:
        rows = s.execute(select(CallbackDeliveryRecord)
                         .where(CallbackDeliveryRecord.job_id == job_id)
                         .order_by(CallbackDeliveryRecord.attempt)).scalars().all()
    return [{"attempt": r.attempt, "message_id": r.message_id,
             "started_at": as_utc(r.started_at).isoformat().replace("+00:00", "Z"),
             "seconds": round(r.seconds, 3),
             "outcome": r.outcome, "detail": r.detail} for r in rows]


def shown_status(stored: str | None) -> str | None:
    """What a tenant sees of a delivery (rows written before the coarse statuses held the
    receiver's status code or error text)."""
    if stored is None or stored in (DELIVERED, FAILED, BLOCKED):
        return stored
    return DELIVERED if stored[:1].isdigit() else FAILED
