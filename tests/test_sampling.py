import numpy as np
import pytest

from pavenet.errors import PavenetError
from training.data.sampling import clip_starts, sample_clip


def test_clip_starts_respect_labels():
    labelled = np.zeros(20, bool)
    labelled[::4] = True  # PoseTrack validation: every 4th frame
    assert clip_starts(labelled, 2, 1, "last").tolist() == [3, 7, 11, 15]
    assert clip_starts(labelled, 2, 4, "all").tolist() == [0, 4, 8, 12]
    assert clip_starts(labelled, 3, 2, "any").tolist() == list(range(0, 16, 2))  # odd starts miss 0, 4, 8, ...
    assert clip_starts(labelled[:2], 5).tolist() == []


def test_sample_clip():
    rng = np.random.default_rng(0)
    idx = sample_clip(np.ones(10, bool), 3, rng, stride=2)
    assert len(idx) == 3 and idx[1] - idx[0] == 2 and idx[-1] < 10
    assert sample_clip(np.zeros(10, bool), 3, rng) is None
    with pytest.raises(PavenetError):
        clip_starts(np.ones(3, bool), 0)
