"""deliver_once against real local HTTP receivers (127.0.0.1, ephemeral ports)."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from standardwebhooks.webhooks import Webhook

from workers.webhooks import Outcome, Resolver, deliver_once, event_payload, message_id, new_secret

LOCAL = ["127.0.0.1"]
PAYLOAD = event_payload("batch.completed", "batch_1", "completed",
                        {"total": 1, "completed": 1, "failed": 0}, 1_800_000_000.0)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A scripted webhook receiver: answers ``status`` with ``headers`` and ``body``."""

    server: ThreadingHTTPServer
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    hang: bool = False
    release: threading.Event = field(default_factory=threading.Event)
    seen: list[Seen] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str = "/hook?token=t0k") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def handler_for(receiver: Callable[[], Receiver]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            me = receiver()
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            me.seen.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()},
                                body))
            if me.hang:
                me.release.wait(10)
                return
            try:
                self.send_response(me.status)
                for name, value in me.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(me.body)))
                self.end_headers()
                self.wfile.write(me.body)
            except OSError:
                pass  # the client hung up early on purpose (oversized answer)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def make_receiver() -> Iterator[Callable[[], Receiver]]:
    started: list[tuple[Receiver, threading.Thread]] = []

    def make() -> Receiver:
        holder: list[Receiver] = []
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(lambda: holder[0]))
        holder.append(Receiver(server))
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  daemon=True)
        thread.start()
        started.append((holder[0], thread))
        return holder[0]

    yield make
    for receiver, thread in started:
        receiver.release.set()
        receiver.server.shutdown()
        receiver.server.server_close()
        thread.join(5)


@pytest.fixture
def receiver(make_receiver: Callable[[], Receiver]) -> Receiver:
    return make_receiver()


@pytest.fixture
def pool() -> Iterator[urllib3.PoolManager]:
    manager = urllib3.PoolManager(retries=False)
    yield manager
    manager.clear()


def send(url: str, pool: urllib3.PoolManager, *, secret: str = "", timeout: float = 5.0,
         allowed: list[str] = LOCAL, resolve: Resolver | None = None,
         now: Callable[[], float] = time.time) -> Outcome:
    return deliver_once(url, secret or new_secret(), PAYLOAD,
                        msg_id=message_id("batch_1", "batch.completed"), timeout=timeout,
                        allowed=allowed, pool=pool, resolve=resolve, now=now)


def test_delivery_is_signed_so_the_official_library_verifies_it(
        receiver: Receiver, pool: urllib3.PoolManager) -> None:
    secret = new_secret()
    assert send(receiver.url(), pool, secret=secret) == Outcome(204, None, None)
    [seen] = receiver.seen
    assert seen.path == "/hook?token=t0k"
    assert Webhook(secret).verify(seen.body, seen.headers) == PAYLOAD
    assert seen.headers["webhook-id"] == message_id("batch_1", "batch.completed")
    assert seen.headers["user-agent"] == "batchgate-webhooks/1"
    assert seen.headers["content-type"] == "application/json"
    assert secret not in str(seen.headers)


def test_redirect_is_not_followed(make_receiver: Callable[[], Receiver],
                                  pool: urllib3.PoolManager) -> None:
    first, target = make_receiver(), make_receiver()
    first.status, first.headers = 302, {"location": target.url("/elsewhere")}
    assert send(first.url(), pool) == Outcome(302, None, None)
    assert len(first.seen) == 1
    assert target.seen == []


def test_410_and_retry_after_are_passed_back(receiver: Receiver,
                                             pool: urllib3.PoolManager) -> None:
    receiver.status = 410
    assert send(receiver.url(), pool).status == 410
    receiver.status, receiver.headers = 503, {"retry-after": "120"}
    assert send(receiver.url(), pool) == Outcome(503, "120", None)


def test_silent_receiver_times_out_within_the_timeout(receiver: Receiver,
                                                      pool: urllib3.PoolManager) -> None:
    receiver.hang = True
    started = time.monotonic()
    outcome = send(receiver.url(), pool, timeout=0.5)
    elapsed = time.monotonic() - started
    assert outcome == Outcome(None, None, "ReadTimeoutError")
    assert 0.4 <= elapsed < 1.5


def test_oversized_answer_is_cut_short(receiver: Receiver, pool: urllib3.PoolManager) -> None:
    receiver.status, receiver.body = 200, b"x" * (4 * 1024 * 1024)
    assert send(receiver.url(), pool) == Outcome(200, None, None)


def test_not_allow_listed_is_refused_before_connecting(receiver: Receiver,
                                                       pool: urllib3.PoolManager) -> None:
    outcome = send(receiver.url(), pool, allowed=[])
    assert outcome.status is None
    assert outcome.error is not None
    assert outcome.error.startswith("refused: ")
    assert "t0k" not in outcome.error
    assert receiver.seen == []


def test_connection_refused_is_a_transport_error(pool: urllib3.PoolManager) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago refuses connections
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    outcome = send(f"http://127.0.0.1:{port}/hook", pool)
    assert outcome == Outcome(None, None, "NewConnectionError")


def test_connects_to_the_checked_address_not_a_second_lookup(
        receiver: Receiver, pool: urllib3.PoolManager) -> None:
    lookups: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    # rebind.test does not exist in DNS: only the checked address can have been used.
    url = f"http://rebind.test:{receiver.port}/hook?token=t0k"
    assert send(url, pool, resolve=resolve).status == 204
    assert lookups == ["rebind.test"]
    [seen] = receiver.seen
    assert seen.headers["host"] == f"rebind.test:{receiver.port}"
    assert seen.path == "/hook?token=t0k"


def test_next_address_is_tried_when_one_refuses(receiver: Receiver,
                                                pool: urllib3.PoolManager) -> None:
    # The receiver listens on 127.0.0.1 only, so 127.0.0.2 (also loopback) refuses.
    url = f"http://two.test:{receiver.port}/hook"
    outcome = send(url, pool, allowed=["127.0.0.0/8"],
                   resolve=lambda host, port: ["127.0.0.2", "127.0.0.1"])
    assert outcome == Outcome(204, None, None)
    assert len(receiver.seen) == 1


def test_timestamp_comes_from_the_clock_given(receiver: Receiver,
                                              pool: urllib3.PoolManager) -> None:
    send(receiver.url(), pool, now=lambda: 1_700_000_000.9)
    assert receiver.seen[0].headers["webhook-timestamp"] == "1700000000"


def self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_https_to_a_checked_address_verifies_the_certificate_for_the_host_name(
        receiver: Receiver, tmp_path: Path) -> None:
    cert_file, key_file = self_signed(tmp_path, "hooks.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
    trusting = urllib3.PoolManager(retries=False, ca_certs=str(cert_file))
    try:
        def local(host: str, port: int) -> list[str]:
            return ["127.0.0.1"]

        good = send(f"https://hooks.test:{receiver.port}/hook", trusting, resolve=local)
        wrong = send(f"https://other.test:{receiver.port}/hook", trusting, resolve=local)
    finally:
        trusting.clear()
    assert good == Outcome(204, None, None)
    assert wrong == Outcome(None, None, "SSLError")  # the name, not the IP, is verified
    assert len(receiver.seen) == 1
