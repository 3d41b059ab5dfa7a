"""The dataset cache: a built-in dataset whose file was altered after writing is reported, with the fix."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from offrl.data import DatasetError, dataset_path, load_dataset


def test_altered_cached_file_is_detected_with_the_remake_command(offrl_home):
    first = load_dataset("pendulum-random")
    path = dataset_path("pendulum-random")
    again = load_dataset("pendulum-random")  # intact: loads, same arrays
    np.testing.assert_array_equal(first.rewards, again.rewards)
    with h5py.File(path, "r+") as h5:  # still a valid HDF5 file, one value changed
        h5["rewards"][3] = h5["rewards"][3] + 1.0
    with pytest.raises(DatasetError, match="checksum") as err:
        load_dataset("pendulum-random")
    assert "regenerate=True" in str(err.value) and str(path) in str(err.value)
    fixed = load_dataset("pendulum-random", regenerate=True)
    np.testing.assert_array_equal(fixed.rewards, first.rewards)
