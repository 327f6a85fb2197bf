"""Endpoints: where a peer listens, written ``tcp://host:port`` or ``unix:///path``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from perun_core.errors import PerunError


class EndpointError(PerunError, ValueError):
    """An endpoint string that cannot be parsed (the message shows the accepted forms)."""


_FORMS = "tcp://HOST:PORT, tcp://[IPv6]:PORT or unix:///absolute/path"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A TCP (host, port) or a Unix-socket path.

    Attributes:
        kind: ``"tcp"`` or ``"unix"``.
        host: the host name or IP literal (TCP only; IPv6 without brackets).
        port: the TCP port (0 for Unix sockets).
        path: the socket path (Unix only).
    """

    kind: Literal["tcp", "unix"]
    host: str = ""
    port: int = 0
    path: str = ""

    def __post_init__(self) -> None:
        if self.kind == "tcp":
            if not self.host or not 0 <= self.port <= 65535 or self.path:
                raise EndpointError(f"invalid TCP endpoint {self.host!r}:{self.port}")
        elif self.kind == "unix":
            if not self.path or self.host or self.port:
                raise EndpointError(f"invalid Unix-socket endpoint {self.path!r}")
        else:
            raise EndpointError(f"unknown endpoint kind {self.kind!r}; use {_FORMS}")

    @classmethod
    def tcp(cls, host: str, port: int) -> Endpoint:
        """A TCP endpoint."""
        return cls("tcp", host=host, port=port)

    @classmethod
    def unix(cls, path: str) -> Endpoint:
        """A Unix-socket endpoint."""
        return cls("unix", path=path)

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """Parse ``tcp://host:port``, ``tcp://[v6]:port`` or ``unix:///path``.

        Raises:
            EndpointError: anything else (no scheme, missing port, port out of range, ...).
        """
        if not isinstance(text, str):
            raise EndpointError(f"an endpoint is a string like {_FORMS}, got {type(text).__name__}")
        scheme, sep, rest = text.partition("://")
        if not sep:
            raise EndpointError(f"endpoint {text!r} has no scheme; use {_FORMS}")
        if scheme == "unix":
            if not rest:
                raise EndpointError(f"endpoint {text!r} has no path; use {_FORMS}")
            return cls.unix(rest)
        if scheme != "tcp":
            raise EndpointError(f"endpoint {text!r}: unknown scheme {scheme!r}; use {_FORMS}")
        if rest.startswith("["):
            host, close, tail = rest[1:].partition("]")
            if not close or not tail.startswith(":"):
                raise EndpointError(f"endpoint {text!r}: expected [IPv6]:PORT; use {_FORMS}")
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise EndpointError(f"endpoint {text!r}: {host!r} is not an IPv6 address") from None
            port_text = tail[1:]
        else:
            host, colon, port_text = rest.rpartition(":")
            if not colon or not host:
                raise EndpointError(f"endpoint {text!r}: expected HOST:PORT; use {_FORMS}")
            if ":" in host:
                raise EndpointError(f"endpoint {text!r}: write IPv6 hosts in brackets, [::1]:PORT")
        # Port 0 is allowed: listening on it picks a free port (dialing it fails).
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise EndpointError(f"endpoint {text!r}: port must be 0..65535, got {port_text!r}")
        return cls.tcp(host, int(port_text))

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


def as_endpoint(value: str | Endpoint) -> Endpoint:
    """``value`` itself or parsed (raises :class:`EndpointError`)."""
    return value if isinstance(value, Endpoint) else Endpoint.parse(value)
