"""Loading perun-eth is cheap and leaves the interpreter as it was.

web3 takes over a second to import and raises the recursion limit process-wide (py_ecc sets
it to 100,000); with that limit a failing test could crash pytest on CPython 3.11
("INTERNALERROR ... AST constructor recursion depth mismatch") and hide which test failed.
So: loading the plugin imports no web3; using it imports web3 with the limit put back, on
every path into the package; and a failing test after that is reported like any other.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def _fresh(code: str) -> dict[str, object]:
    """Run ``code`` in a new interpreter; it prints one JSON object last."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PERUN_PLUGINS": "eth"},
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return result


def test_loading_the_plugin_imports_no_web3() -> None:
    seen = _fresh(
        """
        import json, sys
        from perun_core.cli import main
        from perun_core.plugins import load_plugins
        plugins = load_plugins()
        info = [i.as_dict() for i in plugins.plugins_info()]
        print(json.dumps({"web3": "web3" in sys.modules, "eth_account": "eth_account" in
               sys.modules, "registers": [i["registers"] for i in info if i["name"] == "eth"]}))
        """
    )
    assert seen == {
        "web3": False,
        "eth_account": False,
        "registers": [
            {"chain": ["eth"], "bus": [], "persister": [], "command": ["eth"], "app": []}
        ],
    }


@pytest.mark.parametrize(
    "use",
    [
        "load_plugins().chain('eth')",
        "import perun_eth.node",
        "from perun_eth import EthBackend",
        "import perun_eth.testing",
        "import perun_eth.deploy",
        "from perun_eth.wallet import EthWallet; "
        "EthWallet().save_keystore(EthWallet().new_account().address, '/nonexistent/k', 'pw')",
    ],
)
def test_every_way_into_perun_eth_keeps_the_recursion_limit(use: str) -> None:
    seen = _fresh(
        f"""
        import json, sys
        from perun_core.plugins import load_plugins
        before = sys.getrecursionlimit()
        try:
            {use}
        except KeyError:
            pass  # save_keystore of a wallet that does not hold the account: eth-account loaded
        print(json.dumps({{"before": before, "after": sys.getrecursionlimit(),
                           "web3": "eth_account" in sys.modules}}))
        """
    )
    assert seen["after"] == seen["before"] == 1000, seen
    assert seen["web3"] is True  # the path did load web3 / eth-account


FAILING_SUITE = """
    import sys

    from perun_core.plugins import load_plugins

    LIMIT = sys.getrecursionlimit()


    def test_uses_the_eth_backend():
        backend = load_plugins(only=["eth"]).chain("eth")  # imports web3
        assert backend.name == "eth"
        assert sys.getrecursionlimit() == LIMIT


    async def test_fails_on_purpose():
        from perun_core.testing import chain  # noqa: F401  (rewritten on import)

        async def deeper(n):
            if n == 0:
                assert {"balances": [[1, 2], [3, 4]]} == {"balances": [[1, 2], [3, 5]]}
            await deeper(n - 1)

        await deeper(30)
"""


def test_a_failing_test_after_loading_perun_eth_is_reported_normally(tmp_path: Path) -> None:
    (tmp_path / "test_after_eth.py").write_text(textwrap.dedent(FAILING_SUITE))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_mode=auto",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
            "-rf",
            "test_after_eth.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out  # tests failed; 3 would be an internal error
    assert "INTERNALERROR" not in out and "recursion depth mismatch" not in out
    assert "FAILED test_after_eth.py::test_fails_on_purpose" in out
    assert "1 failed, 1 passed" in out
    assert "[3, 4]" in out and "[3, 5]" in out  # the comparison is explained
