"""The benchmarks' second party: one perun client in its own OS process, over the TCP bus.

Started by ``tests/benchmarks/run.py`` (never by hand)::

    python tests/benchmarks/bench_peer.py --ledger URL --peer HEX --peer-endpoint EP \\
        [--persister NAME --db PATH] [--funds N]

It accepts every channel proposal and, with the client's default update handler, every
update that pays it; every signature it receives is verified by the client as always. It
prints one JSON line ``{"ready": true, "address", "endpoint", "pid"}`` and then answers each
command line on stdin with one JSON line:

``{"cmd": "rusage"}``  its CPU seconds so far (user, system) and peak RSS
``{"cmd": "count"}``   how many channels it holds and the sum of their versions
``{"cmd": "busy_poll", "us": N}``  poll N µs before sleeping (see ``perun_core.eventloop``)
``{"cmd": "quit"}``    close everything and exit 0 (so does the end of stdin)

Only loopback addresses are used; the parent ends it by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import sys
from typing import Any

from perun_core import eventloop
from perun_core.channel.types import Address
from perun_core.client import Client, ClientConfig
from perun_core.plugins import load_plugins


def _emit(value: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def rusage() -> dict[str, float]:
    """This process's CPU seconds and peak resident memory (KiB)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return {"user": r.ru_utime, "system": r.ru_stime, "maxrss_kib": float(r.ru_maxrss)}


async def _run(args: argparse.Namespace) -> int:
    plugins = load_plugins()
    backend: Any = plugins.chain("sim").from_config({"url": args.ledger})
    await backend.connect()
    account = backend.wallet().add_seed(args.seed.encode())
    if args.funds:
        await backend.faucet(account.address, backend.default_assets()[0], args.funds)
    bus: Any = plugins.bus("tcp")(account=account, verify=backend.verify_signature)
    client: Client | None = None
    try:
        endpoint = await bus.listen_on("tcp://127.0.0.1:0")
        bus.add_peer(Address.from_hex(args.peer), args.peer_endpoint)
        from persister_rates import parse_persister  # this directory is sys.path[0]

        name, persister_args = parse_persister(args.persister)
        if args.db:
            persister_args["path"] = args.db
        client = Client(
            account=account,
            backend=backend,
            bus=bus,
            funder=backend.funder(account),
            adjudicator=backend.adjudicator(account),
            persister=plugins.persister(name)(**persister_args),
            config=ClientConfig(update_timeout=60, proposal_timeout=60, busy_timeout=120),
        )
        client.on_proposal(lambda p, r: r.accept())
        await client.start()
        _emit(
            {
                "ready": True,
                "address": account.address.hex(),
                "endpoint": str(endpoint),
                "pid": os.getpid(),
            }
        )
        loop = asyncio.get_running_loop()
        stdin = asyncio.StreamReader()
        pipe, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin
        )
        try:
            while line := await stdin.readline():
                cmd = json.loads(line).get("cmd")
                if cmd == "quit":
                    _emit({"ok": True})
                    break
                if cmd == "rusage":
                    _emit({"ok": True, **rusage()})
                elif cmd == "busy_poll":
                    us = float(json.loads(line).get("us", 0))
                    _emit({"ok": eventloop.set_busy_poll(loop, us), "busy_poll_us": us})
                elif cmd == "count":
                    chans = client.channels
                    total = sum(c.state.version for c in chans)
                    _emit({"ok": True, "channels": len(chans), "versions": total})
                else:
                    _emit({"ok": False, "error": f"unknown command {cmd!r}"})
        finally:
            pipe.close()
        return 0
    finally:
        if client is not None:
            await client.close()
        await bus.close()
        await backend.close()


LOOP_ENV = "PERUN_BENCH_LOOP"
"""Environment variable naming the event loop of the benchmark processes (``asyncio`` or
``uvloop``); run.py's ``--loop`` sets it for its children."""


GC_ENV = "PERUN_BENCH_GC_GEN0"
"""Environment variable with the garbage collector's generation-0 threshold for the benchmark
processes (unset: Python's default, 700); run.py's ``--gc-gen0`` sets it for its children."""


def run_loop(coro: Any) -> Any:
    """Run ``coro`` on the event loop :data:`LOOP_ENV` names (and :data:`GC_ENV` applied).

    ``asyncio``: asyncio's selector loop, made by :func:`perun_core.eventloop.new_event_loop`
    so that busy polling can be switched on for one measurement (off by default).
    """
    gen0 = os.environ.get(GC_ENV)
    if gen0:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(int(gen0), gen1, gen2)
    factory: Any = eventloop.new_event_loop
    if os.environ.get(LOOP_ENV, "asyncio") == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def main() -> int:
    p = argparse.ArgumentParser(description="the benchmarks' second party (see run.py)")
    p.add_argument("--ledger", required=True)
    p.add_argument("--peer", required=True)
    p.add_argument("--peer-endpoint", required=True)
    p.add_argument("--persister", default="memory")
    p.add_argument("--db", default=None)
    p.add_argument("--funds", type=int, default=0, help="faucet credit at start")
    p.add_argument("--seed", default="bench-bob", help="account seed (benchmark keys only)")
    args = p.parse_args()
    try:
        return int(run_loop(_run(args)))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
