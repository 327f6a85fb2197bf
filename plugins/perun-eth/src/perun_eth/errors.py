"""Errors specific to the Ethereum backend (all derive from :mod:`perun_core.errors`)."""

from __future__ import annotations

from perun_core.errors import UnsupportedFeatureError


class UnsupportedParamsError(UnsupportedFeatureError):
    """Channel params that the Ethereum ``Params`` struct cannot express.

    Raised for non-empty ``aux`` (it has no field in the struct, so it could not be bound into
    the channel ID), participants or AppIDs that are not 20-byte addresses, and challenge
    durations that do not fit the contract's ``uint64``.
    """
