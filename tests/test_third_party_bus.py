"""A bus from outside our distributions joins the end-to-end matrix without an edit to it.

The module ``pipe_perun`` is written to a temporary directory with the metadata of an
installed distribution ``pipe-perun-bus`` 1.0, whose ``perun`` entry point registers the
bus ``pipe``: one bus per account (not shared), peers found through an address book of
``pipe://N`` endpoints, every envelope round-tripped through the wire codec. The ordinary
entry-point scan finds it, its typed configuration is checked like a first-party bus's, and
the unchanged ``tests/e2e`` suite passes with ``PERUN_TEST_BUS=pipe``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from perun_sim import SimBackend

from perun_core.errors import ConfigError, PeerDisconnectedError
from perun_core.plugins import load_plugins
from perun_core.wire.local_bus import LocalBus

PACKAGE = "pipe_perun"
DIST = "pipe-perun-bus"
REPO = Path(__file__).resolve().parents[1]

SOURCES = {
    "__init__.py": '''
        """A third party's perun bus."""
    ''',
    "bus.py": """
        import asyncio
        import itertools

        from perun_core.errors import ConfigError, PeerDisconnectedError
        from perun_core.interfaces.bus import Bus, Subscription
        from perun_core.parts import PartConfig, load_config
        from perun_core.wire.codec import decode_envelope, encode_envelope

        _OPEN = {}  # endpoint -> bus: the "network" of this process
        _NUMBERS = itertools.count(1)


        class PipeConfig(PartConfig, frozen=True, kw_only=True):
            encode: bool = True


        class PipeSubscription(Subscription):
            def __init__(self):
                self.queue = asyncio.Queue()

            async def next(self):
                return await self.queue.get()

            def close(self):
                self.queue.put_nowait(None)


        class PipeBus(Bus):
            name = "pipe"
            Config = PipeConfig

            def __init__(self, address, *, encode=True):
                self.address = address
                self.encode = encode
                self.endpoint = f"pipe://{next(_NUMBERS)}"
                self.book = {}
                self.connected = set()
                self.handlers = []
                self.sub = None
                _OPEN[self.endpoint] = self

            @classmethod
            async def open(cls, config=None, *, account=None, backend=None):
                options = load_config(PipeConfig, config, "bus 'pipe'")
                if account is None:
                    raise ConfigError("bus 'pipe' needs the account")
                return cls(account.address, encode=options.encode)

            def advertised_endpoints(self):
                return (self.endpoint,)

            def add_peer(self, address, endpoint):
                self.book[address] = endpoint

            def on_connect(self, address, handler):
                self.handlers.append(handler)

            def subscribe(self, address):
                self.sub = PipeSubscription()
                return self.sub

            async def publish(self, envelope):
                peer = _OPEN.get(self.book.get(envelope.recipient, ""))
                if peer is None or peer.sub is None:
                    raise PeerDisconnectedError(f"{envelope.recipient} is not reachable")
                if self.encode:
                    envelope = decode_envelope(encode_envelope(envelope))
                if envelope.recipient not in self.connected:  # a new "connection"
                    self.connected.add(peer.address)
                    peer.connected.add(self.address)
                    for bus, other in ((self, peer.address), (peer, self.address)):
                        for handler in bus.handlers:
                            asyncio.ensure_future(handler(other))
                peer.sub.queue.put_nowait(envelope)

            async def close(self):
                _OPEN.pop(self.endpoint, None)
                for other in _OPEN.values():
                    other.connected.discard(self.address)
                if self.sub is not None:
                    self.sub.close()
    """,
    "plugin.py": """
        from perun_core import hookimpl


        @hookimpl
        def perun_register_buses(registry):
            registry.add("pipe", "pipe_perun.bus:PipeBus")
    """,
}


@pytest.fixture(scope="module")
def pipe_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``pipe-perun-bus`` installed (on ``sys.path``) for the tests of this module."""
    root = tmp_path_factory.mktemp("site")
    pkg = root / PACKAGE
    pkg.mkdir()
    for name, source in SOURCES.items():
        (pkg / name).write_text(textwrap.dedent(source).lstrip())
    info = root / f"{DIST.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DIST}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[perun]\npipe = {PACKAGE}.plugin\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(root))
        mp.delenv("PERUN_PLUGINS", raising=False)
        yield root
    for mod in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[mod]


async def test_the_third_party_bus_is_opened_by_name_with_its_typed_config(
    pipe_site: Path,
) -> None:
    plugins = load_plugins()
    assert plugins.buses.provider_of("pipe") == "pipe"
    backend = SimBackend.from_config({})
    alice, bob = backend.wallet().new_account(), backend.wallet().new_account()
    with pytest.raises(ConfigError, match="encoding"):
        await plugins.buses.open("pipe", {"encoding": False}, account=alice, backend=backend)
    bus_a = await plugins.buses.open("pipe", {"encode": "false"}, account=alice, backend=backend)
    bus_b = await plugins.buses.open("pipe", None, account=bob, backend=backend)
    assert not bus_a.shared and bus_a.encode is False  # type: ignore[attr-defined]
    assert bus_a.advertised_endpoints() != bus_b.advertised_endpoints()
    # A first-party bus from the same registry, by the same signature:
    local = await plugins.buses.open("local", {"max_size": 4096}, account=alice, backend=backend)
    assert isinstance(local, LocalBus) and local.max_size == 4096
    with pytest.raises(ConfigError, match="max_size"):
        await plugins.buses.open("local", {"max_size": 0})
    sub_b = bus_b.subscribe(bob.address)
    from perun_core.wire.messages import Envelope, Ping

    env = Envelope(alice.address, bob.address, Ping(7))
    with pytest.raises(PeerDisconnectedError):
        await bus_a.publish(env)  # bob's endpoint is not in alice's address book yet
    bus_a.add_peer(bob.address, bus_b.advertised_endpoints()[0])
    await bus_a.publish(env)
    assert await sub_b.next() == env
    for bus in (bus_a, bus_b, local):
        await bus.close()


def test_the_unchanged_e2e_suite_passes_over_the_third_party_bus(pipe_site: Path) -> None:
    env = dict(os.environ)
    env.pop("PERUN_PLUGINS", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pipe_site), env.get("PYTHONPATH")]))
    env.update(
        PERUN_TEST_CHAIN="sim",
        PERUN_TEST_BUS="pipe",
        PERUN_TEST_PERSISTER="memory",
        PERUN_TEST_BUS_CONFIG=json.dumps({"encode": True}),
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "tests/e2e"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "bus=pipe" in out and "4 passed" in out and "skipped" not in out
