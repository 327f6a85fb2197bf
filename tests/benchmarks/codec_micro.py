"""Micro-benchmark of the wire codec against another revision's codec, in one process.

    python tests/benchmarks/codec_micro.py [--baseline REF] [--rounds N] [--json OUT]

Loads ``perun_core/wire/codec.py`` of git revision ``REF`` (default ``main``) beside the
working tree's codec, checks that both produce the same bytes and values for every sample
(the wire format must not change), then times encode and decode of the hot update messages
(``ChannelUpdate``, ``ChannelUpdateAcc``, ``ChannelSync``), of an update envelope and of a
transaction (persistence stores several per update). The two
codecs run interleaved, round after round, and each figure is the best round (µs per call), so
load from other processes on the machine hits both alike. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from perun_core.channel import Allocation, Asset, State, Transaction
from perun_core.channel.types import Address
from perun_core.wire import codec as current
from perun_core.wire.messages import (
    ChannelSync,
    ChannelUpdate,
    ChannelUpdateAcc,
    Envelope,
    Message,
)

ROOT = Path(__file__).resolve().parents[2]


def load_baseline(ref: str) -> ModuleType:
    """The codec module of git revision ``ref``, imported under a private name."""
    source = subprocess.run(
        ["git", "show", f"{ref}:perun_core/wire/codec.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "codec_baseline.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("codec_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def samples() -> dict[str, Message]:
    eth = Asset(1, b"\xee" * 20)
    state = State(b"\xc1" * 32, 41, Allocation((eth,), ((10**18, 2 * 10**18),)))
    tx = Transaction(state, (b"\x5a" * 65, b"\x5b" * 65))
    pending = Transaction(state.transfer(0, 1, 5).replace(version=42), (b"\x5a" * 65, None))
    return {
        "ChannelUpdate": ChannelUpdate(state, 0, b"\x5a" * 65),
        "ChannelUpdateAcc": ChannelUpdateAcc(b"\xc1" * 32, 41, b"\x5b" * 65),
        "ChannelSync": ChannelSync(b"\xc1" * 32, 3, tx, pending, 40),
    }


def best_us(fn: Callable[[Any], object], arg: object, calls: int) -> float:
    gc.disable()  # as timeit does: a collection would land on whichever codec runs then
    try:
        start = time.perf_counter()
        for _ in range(calls):
            fn(arg)
        return (time.perf_counter() - start) / calls * 1e6
    finally:
        gc.enable()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", default="main", help="git revision to compare with")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--calls", type=int, default=1000, help="calls per round")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)

    base = load_baseline(args.baseline)
    sender, recipient = Address(b"\xa1" * 20), Address(b"\xb0" * 20)
    cases: list[tuple[str, Callable[[Any], object], Callable[[Any], object], object, object]] = []
    for name, msg in samples().items():
        data = current.encode(msg)
        if base.encode(msg) != data or base.decode(data) != current.decode(data) != msg:
            print(f"{name}: the codecs disagree", file=sys.stderr)
            return 1
        cases.append((f"encode {name}", base.encode, current.encode, msg, None))
        cases.append((f"decode {name}", base.decode, current.decode, data, None))
    env = Envelope(sender, recipient, samples()["ChannelUpdate"])
    env_data = current.encode_envelope(env)
    if base.encode_envelope(env) != env_data or current.decode_envelope(env_data) != env:
        print("envelope: the codecs disagree", file=sys.stderr)
        return 1
    cases.append(
        ("encode_envelope ChannelUpdate", base.encode_envelope, current.encode_envelope, env, None)
    )
    cases.append(
        (
            "decode_envelope ChannelUpdate",
            base.decode_envelope,
            current.decode_envelope,
            env_data,
            None,
        )
    )

    tx = Transaction(env.msg.state, (b"\x5a" * 65, b"\x5b" * 65))  # type: ignore[attr-defined]
    tx_data = current.encode_transaction(tx)
    if base.encode_transaction(tx) != tx_data or base.decode_transaction(tx_data) != tx:
        print("transaction: the codecs disagree", file=sys.stderr)
        return 1
    cases.append(
        ("encode_transaction", base.encode_transaction, current.encode_transaction, tx, None)
    )
    cases.append(
        ("decode_transaction", base.decode_transaction, current.decode_transaction, tx_data, None)
    )

    acc = Envelope(recipient, sender, samples()["ChannelUpdateAcc"])

    def one_update(c: ModuleType) -> Callable[[Any], object]:
        # The codec work of one update, both parties: the update and its acceptance cross the
        # wire as envelopes, and each party stores the transaction twice (staging, then current).
        def run(_: object) -> None:
            c.decode_envelope(c.encode_envelope(env))
            c.decode_envelope(c.encode_envelope(acc))
            for _i in range(4):
                c.encode_transaction(tx)

        return run

    cases.append(("one update, both parties", one_update(base), one_update(current), None, None))

    best: dict[str, list[float]] = {label: [float("inf")] * 2 for label, *_ in cases}
    for _ in range(args.rounds):
        for label, old, new, arg, _unused in cases:
            for i, fn in enumerate((old, new)):
                best[label][i] = min(best[label][i], best_us(fn, arg, args.calls))
        cases.reverse()  # neither codec always runs first

    title = f"µs per call (best of {args.rounds} rounds)"
    print(f"{title:<34} {args.baseline:>9} {'new':>9} {'new/old':>8}")
    rows = []
    for label, (old_us, new_us) in best.items():
        print(f"{label:<34} {old_us:>9.2f} {new_us:>9.2f} {new_us / old_us:>8.2f}")
        rows.append({"op": label, "baseline_us": old_us, "new_us": new_us})
    if args.json:
        args.json.write_text(json.dumps({"baseline": args.baseline, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
