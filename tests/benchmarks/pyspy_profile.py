"""Where the time of a pipelined update goes: py-spy on both processes of a TCP run.

    python tests/benchmarks/pyspy_profile.py [--channels 256] [--seconds 8] [--out DIR]

Runs the two-process pipelined benchmark of ``run.py`` (memory persister) long enough to
attach py-spy (``pip install py-spy``) to the process that proposes and to the one that
answers, samples each for ``--seconds``, and prints per process the share of samples in
each part of the update path and the functions with the most samples of their own. The raw
samples stay in ``--out`` (flame-graph input). This is how the profile in
``docs/performance.md`` was made; nothing here asserts anything.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

# Parts of the update path, by a frame that marks them (a sample counts for every part whose
# marker is on its stack, so the shares overlap: "verify_state" includes "ECDSA recover");
# a pair (marker, unless) leaves out the samples that also have ``unless`` on their stack.
PARTS: dict[str, str | tuple[str, str]] = {
    "ECDSA recover (libsecp256k1)": "recover (coincurve/ecdsa.py",
    "ECDSA sign (libsecp256k1)": "sign_recoverable (coincurve/keys.py",
    "verify_state (hash + recover + address)": "verify_state (",
    "sign_state (hash + sign)": "sign_state (",
    "wire codec (perun_core.wire.codec)": "perun_core/wire/codec.py",
    "persister events (KVPersister)": "kv_persister.py",
    "update validation (check_update)": "check_update (",
    "asyncio: creating tasks": "ensure_future (",
    "asyncio: timeouts": "asyncio/timeouts.py",
    "asyncio: shield": "shield (",
    "bus: publish (encode + socket write)": ".publish (",
    # Frames are split, decoded and dispatched in the transport's data callback
    # (perun_tcp.inbox); the bus's own part is the framing and the decoding.
    "bus: receive (split + decode)": ("Inbox.feed (", "Client._dispatch ("),
    "client dispatch (handlers, verification)": "Client._dispatch (",
    "watchtower": "watcher/local.py",
}
_IGNORED = ("_do_waitpid",)  # asyncio's child-watcher thread, blocked in waitpid


def summarize(raw: Path, top: int = 25) -> str:
    """A text summary of one py-spy ``--format raw`` file."""
    parts: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        if any(x in stack for x in _IGNORED):
            continue
        n = int(count)
        total += n
        for name, marker in PARTS.items():
            if isinstance(marker, tuple):
                if marker[0] in stack and marker[1] not in stack:
                    parts[name] += n
            elif marker in stack:
                parts[name] += n
        own[stack.split(";")[-1]] += n
    if not total:
        return "  no samples\n"
    lines = [f"  {total} samples"]
    lines += [f"  {parts[name] / total:6.1%}  {name}" for name in PARTS]
    lines.append("  functions with the most samples of their own:")
    lines += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", type=int, default=256)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--out", default=None, help="directory for the raw samples")
    args = ap.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy not found: pip install py-spy", file=sys.stderr)
        return 2
    out = Path(args.out or tempfile.mkdtemp(prefix="perun-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PERUN_DISABLE_PLUGINS", "loguru")
    import bench_peer
    import run

    # Enough updates to outlast the sampling (about 5,000 per second on the 2-core machine).
    updates = int(max(20_000, 9_000 * (args.seconds + 6)))
    sizes = run.Sizes(
        crypto_iters=10,
        seq_updates=10,
        pipelined_channels=(args.channels,),
        pipelined_updates=updates,
        repeats=1,
        scale_channels=1,
        rates_per_channel=1,
    )

    ceiling = run.crypto(run.QUICK)["ceiling"]["two_process_updates_per_s"]

    async def profiled() -> None:
        bench = asyncio.ensure_future(run.tcp(sizes, ceiling, ["memory"]))
        await asyncio.sleep(6)  # set-up: ledger, peer process, channels
        peer = _peer_pid()
        spies = [
            await asyncio.create_subprocess_exec(
                spy, "record", "--pid", str(pid), "-d", str(args.seconds), "-r", "200",
                "-f", "raw", "-o", str(out / f"{name}.txt"),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            for name, pid in (("proposer", os.getpid()), ("responder", peer))
        ]  # fmt: skip
        for s in spies:
            await s.wait()
        await bench

    bench_peer.run_loop(profiled())
    for name in ("proposer", "responder"):
        print(f"\n{name} process ({out / (name + '.txt')}):")
        print(summarize(out / f"{name}.txt"), end="")
    return 0


def _peer_pid() -> int:
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == me and b"bench_peer.py" in cmd:
            return int(entry.name)
    raise RuntimeError("the benchmark's peer process was not found")


if __name__ == "__main__":
    raise SystemExit(main())
