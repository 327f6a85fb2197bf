"""Constants and limits of the data model (see docs/concepts.md)."""

from __future__ import annotations

MAX_PARTICIPANTS = 1024
MAX_ASSETS = 1024
MAX_SUBALLOCS = 1024
MAX_UINT256 = 2**256 - 1
BALANCE_BOUND = 2**256  # balances and per-asset totals are strictly below this
VERSION_BOUND = 2**64
CHALLENGE_DURATION_BOUND = 2**32
NONCE_BOUND = 2**256
ID_LEN = 32
MAX_AUX = 256
MAX_APP_DATA = 64 * 1024
MAX_REASON = 1024

FLOOR_SLACK = 8
"""How far above the newest fully signed version a version floor the peer cannot prove is
believed (sync), and how far ahead a proposal may be to trigger a sync round instead of a
refusal."""

MAX_TREE_DEPTH = 64
"""Deepest nesting of sub-channels a client follows (a ledger channel is depth 0)."""
