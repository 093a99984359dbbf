"""Capture files cut into blocks of whole lines without needless copies (:func:`_blocks_into`, for
:func:`jobs.adapters.capture_kernels._blocks`), and blocks clean enough to be parsed as they are
(:func:`_plain_lines`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np


def _blocks_into(stream: Any, size: int, buffer: bytearray) -> Iterator[bytes]:
    """:func:`_blocks` (the same blocks) for a file: read into one reused buffer and each block
    copied out once, instead of three fresh 16 MB objects per block (the read, the unfinished line
    joined to it, the block cut from that), which cost more CPU than reading the file."""
    if len(buffer) < 2 * size:
        buffer.extend(bytes(2 * size - len(buffer)))
    held = 0  # the unfinished line at the start of the buffer
    while True:
        if held + size > len(buffer):  # a line longer than a block: make room for the next read
            buffer.extend(bytes(held + size - len(buffer)))
        with memoryview(buffer) as view:
            got = stream.readinto(view[held : held + size])
        if not got:
            break
        end = held + got
        cut = buffer.rfind(b"\n", 0, end) + 1
        if cut == 0:
            held = end
            continue
        with memoryview(buffer) as view:
            block = view[:cut].tobytes()
        buffer[: end - cut] = buffer[cut:end]
        held = end - cut
        yield block
    if held:
        yield bytes(buffer[:held])


class _Lines(Sequence[bytes]):
    """The lines of a block in which no line is blank, starts with white space or holds a CR: the
    block is then exactly its lines, each ended by a newline, and is parsed as it is (``data``);
    it is split into lines (as ``bytes.splitlines`` always did) only when one is asked for."""

    def __init__(self, block: bytes, count: int) -> None:
        self.data = block
        self._count = count
        self._split: list[bytes] | None = None

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: Any) -> Any:
        if self._split is None:
            self._split = self.data.splitlines()
        return self._split[index]


def _plain_lines(block: bytes) -> _Lines | None:
    """``block`` as :class:`_Lines`, or None when some line needs ``splitlines``' care."""
    if not block.endswith(b"\n") or b"\r" in block:
        return None
    text = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(text == 10)
    firsts = text[np.concatenate(([0], ends[:-1] + 1))]
    if np.isin(firsts, _BLANK_START).any():
        return None
    return _Lines(block, len(ends))


_BLANK_START = np.frombuffer(b" \t\n\x0b\x0c", dtype=np.uint8)  # bytes.isspace, bar CR
