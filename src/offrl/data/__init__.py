"""Offline datasets: validated arrays, file loaders, preprocessing transforms, device samplers."""

from .dataset import Dataset, DatasetError, DatasetInfo
from .sampling import (Batch, DeviceData, Segment, sample_nstep, sample_segments, sample_uniform,
                       to_device)
from .transforms import Transforms, fit_transforms
from .returns import MonteCarloReturns, discounted_returns
from .sequences import Context, Window, check_sequence_data, returns_to_go, sample_windows

from .registry import dataset_path, list_datasets, load_dataset, register_dataset

__all__ = [
    "Batch",
    "Context",
    "Window",
    "check_sequence_data",
    "returns_to_go",
    "sample_windows",
    "dataset_path",
    "list_datasets",
    "load_dataset",
    "register_dataset",
    "Dataset",
    "DatasetError",
    "DatasetInfo",
    "DeviceData",
    "MonteCarloReturns",
    "discounted_returns",
    "Segment",
    "Transforms",
    "fit_transforms",
    "sample_nstep",
    "sample_segments",
    "sample_uniform",
    "to_device",
]
