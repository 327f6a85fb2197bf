"""``FrameSplitter``: the bus's reader splits a byte stream into frames, chunked any way."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from perun_tcp.framing import FrameSplitter, frame

from perun_core.errors import FrameTooLargeError, MalformedMessageError


@given(
    st.lists(st.binary(min_size=1, max_size=300), max_size=20),
    st.lists(st.integers(1, 64), min_size=1, max_size=50),
)
def test_frames_come_out_whole_and_in_order_however_the_stream_is_cut(
    payloads: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(frame(p) for p in payloads)
    splitter = FrameSplitter(max_size=300)
    out: list[bytes] = []
    pos, i = 0, 0
    while pos < len(stream):
        n = cuts[i % len(cuts)]
        out += splitter.feed(stream[pos : pos + n])
        pos, i = min(pos + n, len(stream)), i + 1
        # Between frames, and only there, nothing is buffered.
        assert splitter.empty == (sum(len(frame(p)) for p in out) == pos)
    assert out == payloads
    assert splitter.empty


def test_one_chunk_with_many_frames_and_a_partial_one() -> None:
    splitter = FrameSplitter(max_size=100)
    data = frame(b"a") + frame(b"bb") + frame(b"ccc")[:5]
    assert splitter.feed(data) == [b"a", b"bb"]
    assert not splitter.empty
    assert splitter.feed(b"cc") == [b"ccc"]
    assert splitter.empty


def test_an_oversized_frame_is_refused_as_soon_as_its_header_is_in() -> None:
    splitter = FrameSplitter(max_size=10)
    assert splitter.feed(frame(b"ok")) == [b"ok"]
    with pytest.raises(FrameTooLargeError):
        splitter.feed((11).to_bytes(4, "big"))  # no payload byte was sent yet


def test_a_header_split_across_chunks_is_still_checked() -> None:
    splitter = FrameSplitter(max_size=10)
    assert splitter.feed(b"\x00\x00") == []
    with pytest.raises(FrameTooLargeError):
        splitter.feed(b"\x10\x00")


def test_a_zero_length_frame_is_malformed() -> None:
    with pytest.raises(MalformedMessageError, match="empty frame"):
        FrameSplitter(max_size=10).feed(frame(b"x") + b"\x00\x00\x00\x00")


@given(
    st.lists(st.binary(min_size=1, max_size=300), max_size=20),
    st.lists(st.integers(1, 64), min_size=1, max_size=50),
    st.integers(1, 100),
)
def test_large_frames_collected_on_their_own_come_out_the_same(
    payloads: list[bytes], cuts: list[int], spill_above: int
) -> None:
    stream = b"".join(frame(p) for p in payloads)
    splitter = FrameSplitter(max_size=300, spill_above=spill_above)
    out: list[bytes] = []
    pos, i = 0, 0
    while pos < len(stream):
        n = cuts[i % len(cuts)]
        out += splitter.feed(stream[pos : pos + n])
        pos, i = min(pos + n, len(stream)), i + 1
        done = sum(len(frame(p)) for p in out)
        assert splitter.buffered == pos - done  # exactly the partial frame is held
    assert out == payloads
    assert splitter.empty


def test_clear_drops_a_partial_frame_of_either_kind() -> None:
    for spill_above in (10, 1000):
        splitter = FrameSplitter(max_size=100, spill_above=spill_above)
        assert splitter.feed(frame(b"x" * 50)[:20]) == []
        assert splitter.buffered == 20 and not splitter.empty
        splitter.clear()
        assert splitter.buffered == 0 and splitter.empty
        assert splitter.feed(frame(b"y")) == [b"y"]
