"""SymbiYosys bounded checks of reader + writer + arbiter (hw/memory/formal.py); the checks are
slow (make formal-dma), the harness's parameter check is not."""

import pytest

from pwconv.hw.formal import check_tools
from pwconv.hw.memory.formal import PROPERTIES, DMAHarness, run_dma_proof
from pwconv.synth.flow import REPO

OUT = REPO / "build" / "test-formal-dma"

needs_tools = pytest.mark.skipif(bool(check_tools()), reason="formal tools not installed "
                                 "(pip install -e '.[formal]')")


def test_init_wrong_property():
    with pytest.raises(ValueError, match=r"^Property must be one of hold, rdata, wdata, "
                                         r"not 'fast'$"):
        DMAHarness("fast")


@pytest.mark.slow
@needs_tools
@pytest.mark.parametrize("prop", PROPERTIES)
def test_formal_dma_property(prop):
    """Each property holds for 25 steps (hold: ~18 min on a loaded 2-core machine; rdata and
    wdata under 30 s once Yosys is warm). A planted overbooking of the reader's FIFO (reserved
    < depth + 1) made rdata FAIL at step 25 in 3 s."""
    result = run_dma_proof(prop, OUT, depth=25)
    assert result["status"] == "PASS", result
