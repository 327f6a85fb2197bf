"""Client configuration: timeouts and limits (defaults in docs/concepts.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Timeouts (seconds of wall time) and limits of a client.

    Attributes:
        proposal_timeout: how long a proposer waits for the answer to a channel proposal,
            and how long the responder's handler has to decide.
        update_timeout: how long a proposer waits for the answer to an update, and how long
            the responder's handler has to decide.
        busy_timeout: how long a local operation waits for the channel's operation slot.
        sync_timeout: how long a sync round waits for the peer's sync message.
        funding_queue: updates from a peer that arrive while we still fund are queued (up
            to this many) and processed once funded.
        conflict_retries: how often the lower-index party re-proposes after a collision.
        auto_settle: once a dispute's timeout has passed (after the peer registered),
            conclude and withdraw without being asked.
        watch: run the local watchtower for every channel (refutes stale registrations).
        final_event_timeout: after a withdrawal, how long the watcher keeps following the
            channel until its ``Concluded`` event has been delivered to ``events()``.
        seen_proposals: how many recent channel-proposal IDs are remembered to ignore
            repeats (the oldest are forgotten first).
    """

    proposal_timeout: float = 30.0
    update_timeout: float = 10.0
    busy_timeout: float = 30.0
    sync_timeout: float = 10.0
    funding_queue: int = 16
    conflict_retries: int = 3
    auto_settle: bool = True
    watch: bool = True
    final_event_timeout: float = 30.0
    seen_proposals: int = 4096
