"""Entry point of the ``perun-eth`` plugin (``[project.entry-points.perun] eth``).

The Ethereum chain backend is registered here once it exists; until then the plugin only
provides the contracts and encodings (importable from :mod:`perun_eth`).
"""

from __future__ import annotations
