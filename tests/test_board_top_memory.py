# amaranth: UnusedElaboratable=no
"""BoardTop's optional board memory: parameters, the mem port only with a memory."""

import pytest

from pwconv.config import ArrayConfig
from pwconv.hw.board import BoardTop
from pwconv.hw.memory.port import NativePortSignature

CFG = ArrayConfig(rows=2, cols=2, max_channels=8, max_filters=8, weight_depth=8)
PORT = NativePortSignature(addr_width=24, data_width=16)


def _top(**kwargs):
    return BoardTop(CFG, clk_freq=12_000_000, baud=3_000_000, **kwargs)


def test_no_memory_no_port():
    top = _top()
    assert top.memory_size is None and "mem" not in top.signature.members


def test_memory_port():
    top = _top(memory=PORT)
    assert top.memory_size == 32 << 20
    assert top.signature.members["mem"].signature == PORT


def test_block_ram_memory_inside():
    top = _top(block_ram_memory=1024)
    assert top.memory_size == 1024 and "mem" not in top.signature.members


def test_init_wrong_block_ram_memory():
    with pytest.raises(ValueError, match=r"^Block RAM memory must be a positive even number "
                                         r"of bytes, not 7$"):
        _top(block_ram_memory=7)


def test_init_memory_and_block_ram():
    with pytest.raises(ValueError, match=r"^Give a memory port or a block RAM memory, "
                                         r"not both$"):
        _top(memory=PORT, block_ram_memory=64)


def test_init_wrong_memory_size():
    with pytest.raises(ValueError, match=r"^Memory size must be a positive multiple of 2 "
                                         r"bytes, at most 33554432 \(the port's range and the "
                                         r"protocol's u32 addresses\), not 3$"):
        _top(memory=PORT, memory_size=3)
