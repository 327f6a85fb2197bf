"""The authentication handshake of a TCP connection.

Three frames, each a bare codec message (``perun_core.wire.codec.encode``), not an envelope::

    dialer -> listener   AuthHello{wire_version, sender=dialer, recipient=listener, challenge_d}
    listener -> dialer   AuthReply{wire_version, sender=listener, recipient=dialer, challenge_l,
                                   sig_l = sign_listener(transcript("listener"))}
    dialer -> listener   AuthConfirm{sig_d = sign_dialer(transcript("dialer"))}

Both challenges are 32 fresh random bytes, so a signature is bound to one handshake and cannot
be replayed; the role tag keeps the listener's signature from serving as a dialer's one.
A side that refuses the handshake sends ``Shutdown{reason}`` (best effort) and closes.

After a valid ``AuthConfirm`` the listener sends a ``Ping`` envelope — an ordinary message,
the first frame of the authenticated connection — and the dialer waits for it before it
uses the connection. Without it a dialer whose proof was refused would not learn so before
writing its first envelopes into a connection that is about to close; with it, the refusal
(a bare ``Shutdown``) surfaces as :class:`AuthenticationError` from the dial.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from typing import Final, Literal

from perun_core.channel.types import Address
from perun_core.errors import (
    AuthenticationError,
    MalformedMessageError,
    UnsupportedWireVersionError,
)
from perun_core.interfaces.wallet import Account
from perun_core.wire import codec
from perun_core.wire.messages import (
    WIRE_VERSION,
    AuthConfirm,
    AuthHello,
    AuthReply,
    Envelope,
    Message,
    Ping,
    Shutdown,
)
from perun_tcp.framing import frame, read_frame

Verifier = Callable[[Address, bytes, bytes], bool]
"""``verify(address, message, sig)``: whether ``sig`` is ``address``'s signature on ``message``
(for example ``ChainBackend.verify_signature``)."""

AUTH_DOMAIN: Final = b"perun-py/auth/v1"
CHALLENGE_LEN: Final = 32
HANDSHAKE_MAX_FRAME: Final = 16 * 1024
"""Largest frame accepted before authentication (an AuthReply with an 8 KiB signature fits)."""

Role = Literal["dialer", "listener"]


class HandshakeTimeoutError(AuthenticationError, TimeoutError):
    """The peer did not complete the handshake within the handshake timeout."""


def transcript(
    role: Role, dialer: Address, listener: Address, challenge_d: bytes, challenge_l: bytes
) -> bytes:
    """The bytes a side signs to prove control of its address (see the module docs).

    ``"perun-py/auth/v1" ‖ role ‖ u16be(len(dialer)) ‖ dialer ‖ u16be(len(listener)) ‖
    listener ‖ challenge_d ‖ challenge_l``; ``role`` is the ASCII ``"dialer"`` or
    ``"listener"`` (prefix-free, so the concatenation is unambiguous).
    """
    if len(challenge_d) != CHALLENGE_LEN or len(challenge_l) != CHALLENGE_LEN:
        raise ValueError(f"challenges are {CHALLENGE_LEN} bytes")
    return b"".join(
        (
            AUTH_DOMAIN,
            role.encode(),
            len(dialer.raw).to_bytes(2, "big"),
            dialer.raw,
            len(listener.raw).to_bytes(2, "big"),
            listener.raw,
            challenge_d,
            challenge_l,
        )
    )


def _verify(verify: Verifier, who: Address, message: bytes, sig: bytes, what: str) -> None:
    try:
        ok = verify(who, message, sig)
    except Exception as e:  # noqa: BLE001 - a verifier may raise on malformed signatures: still a refusal
        raise AuthenticationError(f"{what}: signature of {who} is malformed: {e}") from None
    if not ok:
        raise AuthenticationError(
            f"{what}: signature does not verify for {who}; the peer does not control that address"
        )


def _send(writer: asyncio.StreamWriter, msg: Message) -> None:
    writer.write(frame(codec.encode(msg)))


def _refuse(writer: asyncio.StreamWriter, reason: str) -> None:
    with contextlib.suppress(Exception):  # a courtesy; the caller closes either way
        _send(writer, Shutdown(reason[:1000]))


async def _read(reader: asyncio.StreamReader, expected: type[Message]) -> Message:
    msg = codec.decode(await read_frame(reader, HANDSHAKE_MAX_FRAME), max_size=HANDSHAKE_MAX_FRAME)
    if isinstance(msg, Shutdown):
        raise AuthenticationError(f"the peer refused the handshake: {msg.reason}")
    if not isinstance(msg, expected):
        raise AuthenticationError(
            f"expected {expected.__name__} before authentication, got {type(msg).__name__} "
            f"(code {msg.code}); unauthenticated frames are refused"
        )
    return msg


async def dial(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    account: Account,
    verify: Verifier,
    peer: Address,
    timeout: float,  # noqa: ASYNC109 - every wait has a deadline; this one takes it as an argument
) -> None:
    """Run the dialer's side: prove we are ``account.address`` and that the listener is ``peer``.

    Raises:
        AuthenticationError: the listener is not ``peer``, its signature does not verify, or
            it refused us (:class:`HandshakeTimeoutError` when it took too long).
        UnsupportedWireVersionError: the listener speaks another wire version.
        MalformedMessageError: the listener sent undecodable or oversize bytes.
        ConnectionError: the stream ended.
    """
    me = account.address
    challenge_d = secrets.token_bytes(CHALLENGE_LEN)
    try:
        async with asyncio.timeout(timeout):
            _send(writer, AuthHello(WIRE_VERSION, me, peer, challenge_d))
            await writer.drain()
            reply = await _read(reader, AuthReply)
            assert isinstance(reply, AuthReply)
            if reply.wire_version != WIRE_VERSION:
                _refuse(writer, f"unsupported wire version {reply.wire_version}")
                raise UnsupportedWireVersionError(
                    f"{peer} speaks wire version {reply.wire_version}; we speak {WIRE_VERSION}"
                )
            if reply.sender != peer:
                _refuse(writer, "you are not the peer I dialed")
                raise AuthenticationError(
                    f"dialed {peer} but the listener claims to be {reply.sender}; refusing"
                )
            if reply.recipient != me:
                _refuse(writer, "I am not the recipient you named")
                raise AuthenticationError(f"{peer} answered a handshake for {reply.recipient}")
            text = transcript("listener", me, peer, challenge_d, reply.challenge)
            _verify(verify, peer, text, reply.sig, "handshake reply")
            sig = account.sign(transcript("dialer", me, peer, challenge_d, reply.challenge))
            _send(writer, AuthConfirm(sig))
            await writer.drain()
            # Wait for the listener's verdict: its acceptance Ping, or a Shutdown refusal.
            payload = await read_frame(reader, HANDSHAKE_MAX_FRAME)
            try:
                env = codec.decode_envelope(payload, max_size=HANDSHAKE_MAX_FRAME)
            except MalformedMessageError:
                refusal = codec.decode(payload, max_size=HANDSHAKE_MAX_FRAME)
                reason = refusal.reason if isinstance(refusal, Shutdown) else type(refusal).__name__
                raise AuthenticationError(f"the peer refused the handshake: {reason}") from None
            if not (isinstance(env.msg, Ping) and env.sender == peer and env.recipient == me):
                raise AuthenticationError(
                    f"expected the acceptance Ping from {peer}, got {type(env.msg).__name__} "
                    f"{env.sender} -> {env.recipient}"
                )
    except TimeoutError:
        raise HandshakeTimeoutError(
            f"{peer} did not complete the handshake within {timeout:g} s"
        ) from None


async def accept(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    account: Account,
    verify: Verifier,
    timeout: float,  # noqa: ASYNC109 - every wait has a deadline; this one takes it as an argument
    on_proof: Callable[[Address], Callable[[], None]] | None = None,
) -> Address:
    """Run the listener's side; returns the dialer's proven address.

    Args:
        on_proof: called with the dialer's address once its ``AuthConfirm`` verified (an
            address merely claimed in ``AuthHello`` proves nothing: anyone can send one);
            it returns a callable run when the handshake ends either way.

    Raises:
        AuthenticationError: the dialer named another recipient, its signature does not
            verify, it sent something else than the handshake, or it took too long.
        UnsupportedWireVersionError: the dialer speaks another wire version (after a
            ``Shutdown`` naming ours).
        MalformedMessageError: undecodable or oversize frames.
        ConnectionError: the stream ended.
    """
    me = account.address
    done: Callable[[], None] | None = None
    try:
        async with asyncio.timeout(timeout):
            try:
                hello = await _read(reader, AuthHello)
            except MalformedMessageError as e:
                if isinstance(e, UnsupportedWireVersionError):
                    _refuse(writer, f"unsupported wire version; this side speaks {WIRE_VERSION}")
                raise
            assert isinstance(hello, AuthHello)
            if hello.wire_version != WIRE_VERSION:
                _refuse(writer, f"unsupported wire version; this side speaks {WIRE_VERSION}")
                raise UnsupportedWireVersionError(
                    f"{hello.sender} speaks wire version {hello.wire_version}; we speak "
                    f"{WIRE_VERSION}"
                )
            if hello.recipient != me:
                _refuse(writer, f"wrong recipient: this is {me}")
                raise AuthenticationError(
                    f"{hello.sender} dialed {hello.recipient} but reached us ({me}); refusing"
                )
            if hello.sender == me:
                _refuse(writer, "you claim my own address")
                raise AuthenticationError(f"a dialer claims our own address {me}; refusing")
            peer = hello.sender
            challenge_l = secrets.token_bytes(CHALLENGE_LEN)
            sig = account.sign(transcript("listener", peer, me, hello.challenge, challenge_l))
            _send(writer, AuthReply(WIRE_VERSION, me, peer, challenge_l, sig))
            await writer.drain()
            confirm = await _read(reader, AuthConfirm)
            assert isinstance(confirm, AuthConfirm)
            text = transcript("dialer", peer, me, hello.challenge, challenge_l)
            try:
                _verify(verify, peer, text, confirm.sig, "handshake confirmation")
            except AuthenticationError:
                _refuse(writer, "authentication failed")
                raise
            if on_proof is not None:
                done = on_proof(peer)
            # The acceptance Ping tells the dialer its proof was accepted (see module docs).
            writer.write(frame(codec.encode_envelope(Envelope(me, peer, Ping(time.time_ns())))))
            await writer.drain()
            return peer
    except TimeoutError:
        raise HandshakeTimeoutError(
            f"the dialer did not complete the handshake within {timeout:g} s"
        ) from None
    finally:
        if done is not None:
            done()
