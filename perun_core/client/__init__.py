"""The client side of the protocols: Client, Channel, proposals, updates, settlement."""

from perun_core.client.channel import Channel, Updater
from perun_core.client.client import Client
from perun_core.client.config import ClientConfig
from perun_core.client.proposal import (
    LedgerChannelProposal,
    ProposalInfo,
    ProposalResponder,
)
from perun_core.client.update import UpdateResponder, accept_incoming_payments

__all__ = [
    "Channel",
    "Client",
    "ClientConfig",
    "LedgerChannelProposal",
    "ProposalInfo",
    "ProposalResponder",
    "UpdateResponder",
    "Updater",
    "accept_incoming_payments",
]
