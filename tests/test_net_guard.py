"""URL rules (issue 11 item 4): no client-given URL reaches the server's own network.

No test here sends a packet anywhere but loopback: addresses outside it are refused before any
connection, and host names are mapped to addresses by a resolver given to the guard (what DNS
would answer), so rebinding to 127.0.0.1 is tried against a real receiver on loopback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from framepack_api.net_guard import NetGuard, blocked, guarded_async_client, guarded_client

from support.receiver import Receiver

REFUSED = [
    ("http://127.0.0.1/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://2130706433/", "loopback"),
    ("http://0x7f000001/", "loopback"),
    ("http://017700000001/", "loopback"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://example.com@127.0.0.1/", "loopback"),
    ("http://[::1]:8080/", "loopback"),
    ("http://localhost./", "loopback"),
    ("http://10.0.0.1/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[fd00:ec2::254]/", "private"),
    ("http://[fe80::1]/", "link-local"),
    ("http://224.0.0.1/", "multicast"),
    ("http://100.64.0.1/", "non-public"),
    ("http://[64:ff9b::a00:1]/", "private"),  # NAT64 of 10.0.0.1
    ("http://metadata.test/", "link-local"),  # a name that resolves inside
]
NAMES = {"metadata.test": ["169.254.169.254"], "public.test": ["93.184.216.34"], "localhost": ["127.0.0.1"],
         "rebind.test": ["127.0.0.1"], "mixed.test": ["93.184.216.34", "10.0.0.7"]}


def fake_dns(host: str, port: int) -> list[str]:
    try:
        return NAMES[host]
    except KeyError:
        raise OSError(f"no such host {host}") from None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.mark.parametrize(("url", "reason"), REFUSED)
def test_internal_targets_are_refused_however_written(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=f"\\({reason}\\)"):
        NetGuard.from_entries([], resolver=fake_dns).check_url(url)


def test_public_targets_pass_and_every_address_of_a_name_is_checked() -> None:
    guard = NetGuard.from_entries([], resolver=fake_dns)
    assert guard.check_url("https://public.test/hook?a=1") == "https://public.test/hook?a=1"
    with pytest.raises(ValueError, match=r"10\.0\.0\.7"):
        guard.check_url("http://mixed.test/")  # one inside address is enough to refuse
    with pytest.raises(ValueError, match="cannot resolve"):
        guard.check_url("http://nowhere.test/")
    for bad in ("ftp://public.test/", "http:///path", "http://[::1/"):
        with pytest.raises(ValueError):
            guard.check_url(bad)


def test_the_operator_allows_named_hosts_and_networks() -> None:
    guard = NetGuard.from_entries(["127.0.0.0/8", "metadata.test", "::1"], resolver=fake_dns)
    for url in ("http://127.1:9/", "http://0x7f000001/", "http://metadata.test/", "http://[::1]/"):
        guard.check_url(url)
    with pytest.raises(ValueError, match="private"):
        guard.check_url("http://10.0.0.1/")


def test_rebinding_is_refused_at_connect_time_without_a_packet(receiver: Receiver) -> None:
    """At submit the name was public; when the client connects it resolves to loopback."""
    port = receiver.url.split(":")[2].split("/")[0]
    guard = NetGuard.from_entries([], resolver=fake_dns)

    async def post() -> None:
        async with guarded_async_client(guard) as http:
            await http.post(f"http://rebind.test:{port}/hook", content=b"{}")

    with pytest.raises(httpx.ConnectError) as err:
        asyncio.run(post())
    assert blocked(err.value) is not None and "loopback" in str(err.value)
    with guarded_client(guard) as http, pytest.raises(httpx.ConnectError) as sync_err:
        http.put(f"http://rebind.test:{port}/hook", content=b"{}")
    assert blocked(sync_err.value) is not None
    assert receiver.deliveries == [] and receiver.failures == 0


def test_an_allowed_name_connects_to_the_address_that_was_checked(receiver: Receiver) -> None:
    port = receiver.url.split(":")[2].split("/")[0]
    guard = NetGuard.from_entries(["127.0.0.1"], resolver=fake_dns)

    async def post() -> int:
        async with guarded_async_client(guard) as http:
            return (await http.post(f"http://rebind.test:{port}/hook", content=b"{}")).status_code

    assert asyncio.run(post()) == 204
    assert len(receiver.deliveries) == 1
    assert receiver.deliveries[0].headers["Host"] == f"rebind.test:{port}"  # the name, not the address
