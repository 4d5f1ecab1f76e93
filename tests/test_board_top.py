"""BoardTop: parameter checks, the boards' baud rates, identity, Verilog export."""

import pytest
from amaranth.back import rtlil

from pwconv.config import ArrayConfig
from pwconv.hw.board import BOARD_LINKS, BoardTop
from pwconv.hw.link.protocol import Identity

CFG = ArrayConfig(rows=2, cols=2, max_channels=8, max_filters=8, weight_depth=8)


def test_init():
    top = BoardTop(CFG, clk_freq=12_000_000, baud=3_000_000, max_payload=256)
    assert (top.divisor, top.max_payload) == (4, 256)
    assert top.timeout_cycles == 240_000            # 20 ms
    assert top.identity == Identity.of(CFG, max_payload=256, clk_freq=12_000_000,
                                       baud=3_000_000, timeout=240_000)
    rtlil.convert(top)


def test_register_streams():
    """The ECP5 build's option: a StreamRegister on each of the four link streams (and none
    without it)."""
    names = ("pixels", "results", "weights", "params")
    for on in (False, True):
        top = BoardTop(CFG, clk_freq=12_000_000, baud=3_000_000, register_streams=on)
        text = rtlil.convert(top)
        assert [f"module \\top.{name}\n" in text for name in names] == [on] * 4


@pytest.mark.parametrize("name", sorted(BOARD_LINKS))
def test_board_links(name):
    """Each board's baud rate divides its clock exactly (no baud error at all)."""
    link = BOARD_LINKS[name]
    assert link.divisor == link.clk_freq // link.baud
    assert link.clk_freq % link.baud == 0


def test_init_wrong_config():
    with pytest.raises(TypeError, match=r"^Configuration must be an ArrayConfig, not 4$"):
        BoardTop(4, clk_freq=12_000_000, baud=3_000_000)


def test_init_wrong_baud():
    with pytest.raises(ValueError, match=r"^Baud rate 3000000 at 25000000 Hz is off by 4\.17%"):
        BoardTop(CFG, clk_freq=25_000_000, baud=3_000_000)
    with pytest.raises(ValueError, match=r"^Baud rate 12000000 at 12000000 Hz needs a clock "
                                         r"divisor of at least 4, not 1$"):
        BoardTop(CFG, clk_freq=12_000_000, baud=12_000_000)


def test_init_wrong_max_payload():
    with pytest.raises(ValueError, match=r"^Maximum payload must be between 18 \(the largest "
                                         r"word or pixel\) and 65535 bytes, not 8$"):
        BoardTop(CFG, clk_freq=12_000_000, baud=3_000_000, max_payload=8)
    with pytest.raises(ValueError, match=r"not 65536$"):
        BoardTop(CFG, clk_freq=12_000_000, baud=3_000_000, max_payload=65536)


def test_init_wrong_frame_timeout():
    with pytest.raises(ValueError, match=r"^Frame timeout must be at least 2 byte times "
                                         r"\(6\.67e-06 s at 3000000 baud\), not 1e-06$"):
        BoardTop(CFG, clk_freq=12_000_000, baud=3_000_000, frame_timeout=1e-6)
    with pytest.raises(TypeError, match=r"^Frame timeout must be a number of seconds, "
                                        r"not '20ms'$"):
        BoardTop(CFG, clk_freq=12_000_000, baud=3_000_000, frame_timeout="20ms")


def test_init_results_must_fit_a_frame():
    wide = ArrayConfig(rows=1, cols=64, max_channels=1, max_filters=1 << 16, weight_depth=8)
    with pytest.raises(ValueError, match=r"^One pixel's raw results \(262144 bytes for 65536 "
                                         r"filters\) must fit one frame of 65535 bytes$"):
        BoardTop(wide, clk_freq=12_000_000, baud=3_000_000)
