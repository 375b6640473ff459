"""The allow-list decision for a caller's ``api_base``: pure, resolved addresses given."""

from __future__ import annotations

import pytest

from batchgate.errors import RequestError
from config.api_bases import parse_pattern
from workers.api_base_policy import CheckedBase, admit, check_api_base

ALLOWED = [parse_pattern(text) for text in (
    "https://api.openai.com/v1",
    "https://*.openai.azure.com",
    "http://127.0.0.1:8123/v1",
    "http://[::1]:8124",
    "https://vllm.internal:8443/",
    "https://*.tenant.example.com:8443/api",
)]


def refused(url: str, addresses: list[str] | None = None) -> str:
    """The message of the 400 for ``url`` (resolving to ``addresses``)."""
    with pytest.raises(RequestError) as caught:
        admit(check_api_base(url, ALLOWED), addresses or [])
    assert caught.value.code == "invalid_api_base"
    assert caught.value.param == "api_base"
    assert caught.value.status == 400
    return caught.value.message


def allowed(url: str, addresses: list[str] | None = None) -> CheckedBase:
    checked = check_api_base(url, ALLOWED)
    admit(checked, addresses or [])
    return checked


@pytest.mark.parametrize("url", [
    "https://api.openai.com/v1", "https://api.openai.com/v1/", "https://API.OpenAI.com/v1",
    "https://api.openai.com:443/v1", "https://api.openai.com/v1/org-x",
])
def test_a_listed_url_prefix_is_allowed_without_looking_at_addresses(url: str) -> None:
    checked = allowed(url)
    assert checked.trusted
    assert checked.url.text().startswith("https://api.openai.com/v1")


@pytest.mark.parametrize("url", [
    "https://api.openai.com/v10", "https://api.openai.com/", "https://api.openai.com",
    "https://api.openai.com:8443/v1", "https://api.openai.com.evil.test/v1",
    "https://evilapi.openai.com/v1", "https://other.example/v1",
])
def test_anything_else_than_a_listed_prefix_is_refused(url: str) -> None:
    assert "allowed_api_bases" in refused(url, ["8.8.8.8"])


def test_https_entries_never_allow_http() -> None:
    assert "allowed_api_bases" in refused("http://api.openai.com/v1", ["8.8.8.8"])
    assert "allowed_api_bases" in refused("http://res.openai.azure.com", ["8.8.8.8"])


def test_http_is_allowed_where_an_entry_says_http() -> None:
    assert allowed("http://127.0.0.1:8123/v1").trusted
    assert "allowed_api_bases" in refused("https://127.0.0.1:8123/v1")


def test_a_wildcard_matches_exactly_one_more_label_on_the_same_port() -> None:
    checked = allowed("https://my-res.openai.azure.com", ["20.1.2.3"])
    assert not checked.trusted
    for url in ("https://openai.azure.com", "https://a.b.openai.azure.com",
                "https://x.openai.azure.com:444", "https://x.evilopenai.azure.com"):
        assert "allowed_api_bases" in refused(url, ["20.1.2.3"])


def test_a_wildcard_entry_keeps_its_port_and_path_prefix() -> None:
    assert allowed("https://t1.tenant.example.com:8443/api/v1", ["20.1.2.3"])
    assert "allowed_api_bases" in refused("https://t1.tenant.example.com/api", ["20.1.2.3"])
    assert "allowed_api_bases" in refused("https://t1.tenant.example.com:8443/apiv1",
                                          ["20.1.2.3"])


@pytest.mark.parametrize(("kind", "address"), [
    ("loopback", "127.0.0.1"), ("loopback", "127.8.9.10"), ("loopback", "::1"),
    ("rfc1918", "10.0.0.1"), ("rfc1918", "172.16.5.4"), ("rfc1918", "172.31.255.255"),
    ("rfc1918", "192.168.1.1"), ("unique local", "fc00::1"), ("unique local", "fd12:3456::1"),
    ("link-local", "169.254.1.1"), ("cloud metadata", "169.254.169.254"),
    ("link-local", "fe80::1"), ("unspecified", "0.0.0.0"), ("unspecified", "::"),
    ("multicast", "224.0.0.1"), ("multicast", "239.255.255.250"), ("multicast", "ff02::1"),
    ("shared address space", "100.64.0.1"), ("reserved", "240.0.0.1"),
    ("ipv4-mapped loopback", "::ffff:127.0.0.1"), ("ipv4-mapped metadata",
                                                   "::ffff:169.254.169.254"),
    ("nat64 to private", "64:ff9b::10.0.0.1"), ("6to4 to private", "2002:0a00:0001::1"),
])
def test_a_wildcard_host_resolving_to_a_non_public_address_is_refused(
        kind: str, address: str) -> None:
    assert "non-public" in refused("https://res.openai.azure.com", [address]), kind


def test_one_non_public_answer_among_public_ones_is_enough_to_refuse() -> None:
    # DNS rebinding answers with a public and a private address at once.
    assert "non-public" in refused("https://res.openai.azure.com",
                                   ["20.1.2.3", "2603:1030::5", "10.1.2.3"])


def test_a_wildcard_host_that_does_not_resolve_is_refused() -> None:
    assert "cannot be resolved" in refused("https://res.openai.azure.com", [])
    assert "non-public" in refused("https://res.openai.azure.com", ["not-an-address"])


def test_public_ipv6_answers_are_allowed() -> None:
    assert allowed("https://res.openai.azure.com", ["2603:1030:b:3::152", "20.1.2.3"])


@pytest.mark.parametrize("url", [
    "http://10.0.0.1/v1", "http://169.254.169.254/", "http://169.254.169.254/latest/meta-data",
    "http://127.0.0.1:1/", "http://127.0.0.1:8124/v1", "http://[::1]:8123/v1",
    "http://[fe80::1]/", "http://[::ffff:127.0.0.1]:8123/v1", "http://0.0.0.0:8123/v1",
    "http://localhost:8123/v1",
])
def test_non_public_hosts_not_listed_exactly_are_refused(url: str) -> None:
    refused(url)


def test_a_non_public_host_listed_exactly_is_allowed_as_the_operator_chose_it() -> None:
    assert allowed("http://127.0.0.1:8123/v1").url.text() == "http://127.0.0.1:8123/v1"
    assert allowed("http://[::1]:8124/v1").url.text() == "http://[::1]:8124/v1"
    assert allowed("https://vllm.internal:8443/v1").trusted  # resolves to 10.x: its business


@pytest.mark.parametrize("url", [
    "https://evil@10.0.0.1", "https://evil@api.openai.com/v1",
    "https://api.openai.com@10.0.0.1/v1", "https://user:pw@api.openai.com/v1",
    "https://:@api.openai.com/v1",
])
def test_userinfo_is_refused(url: str) -> None:
    assert "credentials" in refused(url)


@pytest.mark.parametrize("url", [
    "http://2130706433/", "http://2130706433:8123/v1", "http://0x7f000001:8123/v1",
    "http://0x7f.0.0.1:8123/v1", "http://0177.0.0.1:8123/v1", "http://127.1:8123/v1",
    "http://127.0.0.01:8123/v1", "http://017700000001:8123/v1", "http://0x7f.1:8123/v1",
])
def test_numeric_host_forms_other_than_dotted_quads_are_refused(url: str) -> None:
    assert "numeric host" in refused(url)


def test_a_trailing_dot_is_the_same_host_and_the_url_called_drops_it() -> None:
    assert allowed("https://api.openai.com./v1").url.text() == "https://api.openai.com/v1"
    assert allowed("http://127.0.0.1.:8123/v1").url.text() == "http://127.0.0.1:8123/v1"
    assert allowed("https://res.openai.azure.com.", ["20.1.2.3"]).url.host == \
        "res.openai.azure.com"
    assert "non-public" in refused("https://res.openai.azure.com.", ["169.254.169.254"])
    refused("http://169.254.169.254./")


@pytest.mark.parametrize(("url", "says"), [
    ("https://api.openai.com/v1?x=1", "query"), ("https://api.openai.com/v1#f", "query"),
    ("https://api.openai.com/v1/../admin", "segment"), ("https://api.openai.com/v1/./x",
                                                        "segment"),
    ("https://api.openai.com/v1/%2e%2e/admin", "path"), ("https://api.openai.com/v1\\x",
                                                        "backslash"),
    ("https://api.openai.com/v1 ", "whitespace"), ("https://api.open\tai.com/v1",
                                                    "whitespace"),
    ("ftp://api.openai.com/v1", "https://"), ("api.openai.com/v1", "https://"),
    ("https://[fe80::1%25eth0]/v1", "zone"), ("https:///v1", "no host"),
    ("https://*.openai.azure.com", "wildcard"), ("https://api.openai.com:99999/v1", "parsed"),
])
def test_unusual_urls_are_refused_before_any_matching(url: str, says: str) -> None:
    assert says in refused(url)


@pytest.mark.parametrize("value", [None, "", 42, ["https://api.openai.com/v1"]])
def test_api_base_must_be_a_string(value: object) -> None:
    with pytest.raises(RequestError, match="non-empty string"):
        check_api_base(value, ALLOWED)


def test_nothing_is_allowed_by_an_empty_allow_list() -> None:
    with pytest.raises(RequestError, match="allowed_api_bases"):
        check_api_base("https://api.openai.com/v1", [])


@pytest.mark.parametrize("entry", [
    "https://*", "https://*.com", "https://a.*.example.com", "https://*.10.0.0.1",
    "https://*.[::1]", "https://user@api.openai.com", "https://api.openai.com/v1?x",
    "gopher://api.openai.com", "https://2130706433", "https://api.openai.com/v1/..",
])
def test_bad_allow_list_entries_are_refused_at_config_load(entry: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the loader turns any into a ConfigError
        parse_pattern(entry)
