"""Import web3 without keeping the recursion limit it sets.

web3 imports py_ecc, which raises the interpreter's recursion limit to 100,000 for code this
package never calls. With that limit, runaway recursion overflows the C stack instead of
raising RecursionError, and CPython 3.11's AST validator can fail ("AST constructor recursion
depth mismatch") when pytest rewrites a module afterwards. ``perun_eth`` imports this module
first, so web3 is loaded (and cached) here and the previous limit is put back.
"""

from __future__ import annotations

import sys

_limit = sys.getrecursionlimit()
import web3  # noqa: E402,F401

sys.setrecursionlimit(_limit)
