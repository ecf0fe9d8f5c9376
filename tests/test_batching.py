"""Fixed-shape batches with a padded last batch."""

import numpy as np
import pytest

from lkgan_jax.utils.batching import padded_batches


def test_padded_batches_cover_every_index_once_in_order():
    batches = list(padded_batches(7, 3))
    assert [count for _, count in batches] == [3, 3, 1]
    assert all(indices.shape == (3,) for indices, _ in batches)
    np.testing.assert_array_equal(batches[-1][0], [6, 6, 6])  # padding repeats the last index
    covered = np.concatenate([indices[:count] for indices, count in batches])
    np.testing.assert_array_equal(covered, np.arange(7))
    with pytest.raises(ValueError, match="positive"):
        list(padded_batches(0, 3))
