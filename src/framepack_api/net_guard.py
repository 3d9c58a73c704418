"""Where the server may send requests on a client's behalf (webhooks, serverless ``output_url``).

A client-given URL must not reach the server's own network: loopback, private, link-local (cloud
metadata at 169.254.169.254 and fd00:ec2::254), multicast, reserved and unspecified addresses are
refused, however the address is written (``127.1``, ``2130706433``, ``0x7f000001``,
``[::ffff:127.0.0.1]``, a user-info trick like ``http://example.com@127.0.0.1/``).

Two checks, the same rules:
- ``check_url`` at submit, so that a bad target is a 422 naming the field;
- the transports of ``guarded_client`` / ``guarded_async_client`` at connect time: the host is resolved
  once, every resolved address is checked, and the connection goes to that checked address (TLS still
  verifies the host name). A name that resolves to a public address at submit and to 127.0.0.1 later
  (DNS rebinding) is refused before any packet is sent.

The operator opens exceptions with ``FRAMEPACK_API_OUTBOUND_ALLOW``: host names, or networks in CIDR
notation (``127.0.0.0/8``, ``10.1.2.0/24``, ``::1/128``). The remote backend's base URL is set by the
operator and does not go through this module.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# host, port -> the addresses a connection may go to (getaddrinfo's answer, as text).
Resolver = Callable[[str, int], list[str]]

NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedAddress(httpcore.ConnectError):
    """A connection refused by the rules before it was attempted (httpx raises it as ConnectError)."""


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _embedded_v4(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo, NAT64), else the address itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip.teredo is not None:
            return ip.teredo[1]
        if ip in NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def why_blocked(ip: IPAddress) -> str | None:
    """Why an address is not a public unicast one, or None when it is."""
    ip = _embedded_v4(ip)
    for name in ("loopback", "link_local", "multicast", "unspecified", "private", "reserved"):
        if getattr(ip, f"is_{name}"):
            return name.replace("_", "-")
    if not ip.is_global:  # shared address space (100.64/10), documentation ranges, ...
        return "non-public"
    return None


def _numeric_host(name: str) -> str | None:
    """An address literal in any spelling a C resolver accepts (127.1, 2130706433, 0x7f000001,
    octal), as the address it means; None for a host name."""
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    try:
        return socket.inet_ntoa(socket.inet_aton(name))
    except OSError:
        return None


@dataclass(frozen=True)
class NetGuard:
    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[Network, ...] = ()
    resolver: Resolver = system_resolver

    @classmethod
    def from_entries(cls, entries: Iterable[str], resolver: Resolver = system_resolver) -> NetGuard:
        """``outbound_allow`` entries: CIDR networks or single addresses, else host names."""
        hosts: set[str] = set()
        networks: list[Network] = []
        for entry in (e.strip() for e in entries):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks), resolver)

    def check_address(self, host: str, address: str) -> None:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if any(ip in net or _embedded_v4(ip) in net for net in self.allowed_networks):
            return
        reason = why_blocked(ip)
        if reason is not None:
            raise BlockedAddress(f"{host!r} is {ip} ({reason}); this server does not send there "
                                 "(an operator can allow it with FRAMEPACK_API_OUTBOUND_ALLOW)")

    def resolve(self, host: str, port: int) -> list[str]:
        """Every address of ``host``, each checked; BlockedAddress if any is refused."""
        name = host.strip("[]").lower().rstrip(".")
        literal = _numeric_host(name)
        try:
            addresses = [literal] if literal else self.resolver(name, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from None
        if not addresses:
            raise httpcore.ConnectError(f"{host!r} has no address")
        if name not in self.allowed_hosts:
            for address in addresses:
                self.check_address(host, address)
        return addresses

    def check_url(self, url: str, *, resolve: bool = True) -> str:
        """Refuse a URL the server must not send to; ValueError with the reason. Returns the URL as
        the HTTP client will use it. Resolves a host name (blocking: call it off the event loop)
        unless ``resolve`` is false; address literals are always checked."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise ValueError(f"not a valid URL: {exc}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError("must be an absolute http:// or https:// URL")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        if not resolve and not _numeric_host(parsed.host.strip("[]").lower().rstrip(".")):
            return str(parsed)  # checked when the connection is made
        try:
            self.resolve(parsed.host, port)
        except httpcore.ConnectError as exc:
            raise ValueError(str(exc)) from None
        return str(parsed)


class _GuardedAsyncBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend, guard: NetGuard) -> None:
        self.inner = inner
        self.guard = guard

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        addresses = await anyio.to_thread.run_sync(self.guard.resolve, host, port)
        return await _first(addresses, lambda a: self.inner.connect_tcp(a, port, timeout, local_address,
                                                                         socket_options))

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise BlockedAddress("unix sockets are not a webhook target")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class _GuardedBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend, guard: NetGuard) -> None:
        self.inner = inner
        self.guard = guard

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        last: Exception | None = None
        for address in self.guard.resolve(host, port):
            try:
                return self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        raise BlockedAddress("unix sockets are not an upload target")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


async def _first(addresses: Sequence[str], connect: Callable[[str], Any]) -> httpcore.AsyncNetworkStream:
    """Connect to the first checked address that answers (a name may have several)."""
    last: Exception | None = None
    for address in addresses:
        try:
            stream: httpcore.AsyncNetworkStream = await connect(address)
            return stream
        except httpcore.ConnectError as exc:
            last = exc
    assert last is not None
    raise last


def guarded_async_client(guard: NetGuard, **kwargs: Any) -> httpx.AsyncClient:
    """An AsyncClient whose every connection passes ``guard``; environment proxies are ignored, since a
    proxy would connect on the client's behalf to an address this side never checked."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    pool = transport._pool  # httpx offers no public hook for the network backend
    pool._network_backend = _GuardedAsyncBackend(pool._network_backend, guard)
    return httpx.AsyncClient(transport=transport, trust_env=False, follow_redirects=False, **kwargs)


def guarded_client(guard: NetGuard, **kwargs: Any) -> httpx.Client:
    transport = httpx.HTTPTransport(trust_env=False)
    pool = transport._pool
    pool._network_backend = _GuardedBackend(pool._network_backend, guard)
    return httpx.Client(transport=transport, trust_env=False, follow_redirects=False, **kwargs)


def blocked(exc: BaseException) -> BlockedAddress | None:
    """The refusal behind an httpx error, if it was one."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, BlockedAddress):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None
