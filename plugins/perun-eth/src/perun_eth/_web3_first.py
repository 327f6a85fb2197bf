"""Import web3 without keeping the recursion limit it sets.

web3 imports py_ecc, which raises the interpreter's recursion limit to 100,000 for code this
package never calls. With that limit, runaway recursion overflows the C stack instead of
raising RecursionError, and CPython 3.11's AST validator can fail ("AST constructor recursion
depth mismatch") when pytest rewrites a module afterwards. Every module of ``perun_eth`` that
imports web3 or eth-account imports this module first, so web3 is loaded (and cached) here
and the previous limit is put back. The package itself does not import it: loading the
plugin must stay cheap.
"""

from __future__ import annotations

import sys

_limit = sys.getrecursionlimit()
import web3  # noqa: E402,F401

sys.setrecursionlimit(_limit)
