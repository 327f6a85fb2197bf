"""perun-eth: the Ethereum backend of perun-py.

The contracts' ABI encodings and signatures live in :mod:`perun_eth.encoding`, the compiled
contract artifacts in :mod:`perun_eth.contracts`, and test helpers (anvil, deployment) in
:mod:`perun_eth.testing`.
"""

from __future__ import annotations

__all__: list[str] = []
