"""Host tiling: passes cover every (channel, filter) exactly once and fit on chip."""

import numpy as np
import pytest

from pwconv.config import ArrayConfig
from pwconv.host.tiling import plan_passes

CFG = ArrayConfig(rows=4, cols=4, max_channels=32, max_filters=16, weight_depth=12)


@pytest.mark.parametrize("channels, filters", [
    (1, 1), (3, 3), (4, 4), (5, 5), (17, 17), (32, 16), (33, 1), (48, 48), (200, 37)])
def test_passes_cover_layer_once_and_fit(channels, filters):
    passes = plan_passes(CFG, channels, filters)
    cover = np.zeros((channels, filters), int)
    for p in passes:
        cover[p.c0:p.c1, p.f0:p.f1] += 1
        assert CFG.fits(p.c1 - p.c0, p.f1 - p.f0)
    assert (cover == 1).all()
    assert len({p.raw for p in passes}) == 1


def test_prefers_splitting_filters():
    passes = plan_passes(CFG, 12, 40)         # 3 beats: 4 tiles (16 filters) per pass
    assert not any(p.raw for p in passes)
    assert [(p.f0, p.f1) for p in passes] == [(0, 16), (16, 32), (32, 40)]


def test_splits_channels_only_when_one_tile_does_not_fit():
    passes = plan_passes(CFG, 52, 4)          # 13 beats > 12 words per PE
    assert all(p.raw for p in passes)
    assert [(p.c0, p.c1) for p in passes] == [(0, 32), (32, 52)]


def test_wrong_shape():
    with pytest.raises(ValueError, match=r"^Layer must have C >= 1 and F >= 1, got C=0, F=3$"):
        plan_passes(CFG, 0, 3)
