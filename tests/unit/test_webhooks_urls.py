"""Webhook URL checks (SSRF guard), with a fake resolver: no DNS."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from batchgate.errors import RequestError
from workers.webhooks import check_url, resolve_target

PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"
NON_PUBLIC = [
    "127.0.0.1", "127.8.9.10", "::1", "10.1.2.3", "172.16.0.1", "172.31.255.254",
    "192.168.1.1", "169.254.169.254", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "0.0.0.0", "::",
    "fe80::1", "fc00::1", "fec0::1", "224.0.0.1", "ff02::1", "100.64.0.1", "192.0.2.1",
    "240.0.0.1", "255.255.255.255", "2002:7f00:1::", "64:ff9b::a00:1",
]


def resolver(*addresses: str) -> Callable[[str, int], list[str]]:
    def resolve(host: str, port: int) -> list[str]:
        return list(addresses)
    return resolve


def no_dns(host: str, port: int) -> list[str]:
    raise AssertionError(f"resolved {host} but should not have")


def unresolvable(host: str, port: int) -> list[str]:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def refusal(url: str, allowed: list[str] | None = None,
            resolve: Callable[[str, int], list[str]] = no_dns) -> RequestError:
    with pytest.raises(RequestError) as caught:
        check_url(url, allowed or [], resolve)
    assert caught.value.param == "webhook.url"
    assert caught.value.code == "invalid_webhook_url"
    assert caught.value.status == 400
    return caught.value


def literal(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def test_public_ip_is_accepted() -> None:
    check_url(f"https://{PUBLIC_V4}/hook", [], no_dns)
    check_url(f"https://[{PUBLIC_V6}]:8443/hook", [], no_dns)


def test_host_resolving_to_public_addresses_is_accepted() -> None:
    target = resolve_target("https://hooks.example.com/in?token=t", [],
                            resolver(PUBLIC_V4, PUBLIC_V6, PUBLIC_V4))
    assert target.addresses == (PUBLIC_V4, PUBLIC_V6)
    assert (target.host, target.port, target.path) == ("hooks.example.com", 443, "/in?token=t")
    assert target.host_header == "hooks.example.com"


@pytest.mark.parametrize("address", NON_PUBLIC)
def test_non_public_ip_literal_is_refused(address: str) -> None:
    error = refusal(f"http://{literal(address)}:8080/hook?token=s3cr3t")
    assert "non-public" in error.message


@pytest.mark.parametrize("address", NON_PUBLIC)
def test_host_resolving_to_non_public_address_is_refused(address: str) -> None:
    error = refusal("https://evil.example.com/hook?token=s3cr3t", resolve=resolver(address))
    assert "evil.example.com" in error.message
    assert address not in error.message  # do not map private DNS for the caller


def test_host_resolving_to_public_and_private_addresses_is_refused() -> None:
    refusal("https://mixed.example.com/", resolve=resolver(PUBLIC_V4, "10.0.0.7"))


@pytest.mark.parametrize("resolve", [unresolvable, resolver()])
def test_unresolvable_host_is_refused(resolve: Callable[[str, int], list[str]]) -> None:
    assert "cannot be resolved" in refusal("https://nope.invalid/", resolve=resolve).message


def test_allowed_by_ip() -> None:
    check_url("http://127.0.0.1:9000/hook", ["127.0.0.1"], no_dns)
    check_url("http://[::ffff:127.0.0.1]:9000/hook", ["127.0.0.1"], no_dns)
    check_url("http://[::1]:9000/hook", ["::1"], no_dns)
    refusal("http://127.0.0.2:9000/hook", ["127.0.0.1"])


def test_allowed_by_cidr() -> None:
    check_url("http://10.20.30.40/hook", ["10.0.0.0/8"], no_dns)
    check_url("https://internal.example/", ["10.0.0.0/8"], resolver("10.1.1.1", "10.2.2.2"))
    refusal("https://internal.example/", ["10.0.0.0/8"], resolver("10.1.1.1", "192.168.0.1"))


def test_allowed_by_host_name_skips_the_address_check() -> None:
    target = resolve_target("http://LocalHost.:8000/cb", ["localhost"], no_dns)
    assert target.addresses == ("localhost.",)  # urllib3 resolves trusted names itself
    check_url("https://hooks.internal.example/x", ["Hooks.Internal.Example"], no_dns)
    refusal("https://other.internal.example/x", ["hooks.internal.example"],
            resolver("10.0.0.1"))


@pytest.mark.parametrize("url", [
    "https://alice:hunter2@example.com/hook", "https://alice@example.com/hook",
    "https://:hunter2@example.com/hook", "http://example.com\\@127.0.0.1/",
])
def test_userinfo_is_refused(url: str) -> None:
    error = refusal(url)
    assert "credentials" in error.message
    assert "alice" not in error.message
    assert "hunter2" not in error.message


@pytest.mark.parametrize("url", [
    "ftp://example.com/hook", "file:///etc/passwd", "gopher://example.com/",
    "javascript:alert(1)", "example.com/hook", "//example.com/hook", "",
])
def test_other_schemes_are_refused(url: str) -> None:
    assert "http:// or https://" in refusal(url).message


@pytest.mark.parametrize("url", ["http:///hook", "https://:443/hook", "http://?x"])
def test_missing_host_is_refused(url: str) -> None:
    assert "no host" in refusal(url).message


@pytest.mark.parametrize("url", [
    "https://example.com:99999/", "https://example.com:port/", "http://[::1/",
    "https://exa\tmple.com/", "https://example.com/a b", "https://example.com/\r\nX: y",
])
def test_malformed_urls_are_refused(url: str) -> None:
    refusal(url)


def test_overlong_url_is_refused() -> None:
    url = f"https://{PUBLIC_V4}/" + "a" * 2048
    assert "2048" in refusal(url).message
    check_url(url[:2048], [], no_dns)


@pytest.mark.parametrize(("url", "resolve"), [
    ("http://127.0.0.1/cb/tok-path?token=s3cr3t", no_dns),
    ("https://evil.example.com/cb/tok-path?token=s3cr3t", resolver("10.0.0.1")),
    ("https://nope.invalid/cb/tok-path?token=s3cr3t", unresolvable),
    ("ftp://example.com/cb/tok-path?token=s3cr3t", no_dns),
    ("https://u:p@example.com/cb/tok-path?token=s3cr3t", no_dns),
    (f"https://{PUBLIC_V4}/cb/tok-path?token=s3cr3t" + "x" * 2100, no_dns),
])
def test_message_never_shows_path_or_query(url: str,
                                          resolve: Callable[[str, int], list[str]]) -> None:
    message = refusal(url, resolve=resolve).message
    assert "s3cr3t" not in message
    assert "tok-path" not in message


def test_target_keeps_port_path_and_idna_host() -> None:
    target = resolve_target("https://bücher.example:8443/pé?q=1#frag", [], resolver(PUBLIC_V4))
    assert target.host == "xn--bcher-kva.example"
    assert target.path == "/p%C3%A9?q=1"
    assert target.host_header == "xn--bcher-kva.example:8443"
    assert target.origin == "https://xn--bcher-kva.example"
    assert resolve_target(f"http://[{PUBLIC_V6}]", [], no_dns).host_header == f"[{PUBLIC_V6}]"
