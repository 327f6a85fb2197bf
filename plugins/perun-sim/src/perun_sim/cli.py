"""``perun sim``: serve a simulated ledger to clients in other processes.

Registered as the ``sim`` command of ``perun`` through the ``perun_register_commands`` hook::

    perun sim serve --port 7545               # realtime clock, tcp://127.0.0.1:7545
    perun sim serve --manual-clock --port 0   # tests: time moves only when a client says so
    perun sim serve --unix /tmp/ledger.sock

The server runs until SIGINT or SIGTERM; see :mod:`perun_sim.server`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Final

HELP: Final = "simulated ledger: serve one to clients in other processes"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``serve`` action to the ``perun sim`` parser."""
    from perun_sim.server import DESCRIPTION, add_arguments

    sub = parser.add_subparsers(dest="sim_command", required=True, metavar="ACTION")
    serve = sub.add_parser("serve", help=DESCRIPTION.rstrip("."), description=DESCRIPTION)
    add_arguments(serve)


async def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; 2 if the address cannot be bound."""
    from perun_sim.server import serve

    try:
        await serve(args)
    except OSError as e:  # e.g. the port is taken
        print(f"perun: error: sim serve: {e}", file=sys.stderr)
        return 2
    return 0
