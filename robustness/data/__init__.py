"""Data sets for audits and trainings: benchmark sets read offline, image folders, user files.

Everything returns float32 images in [0, 1] (ε is measured in those units) with int64 labels,
plus the indices taken and a description (with a sha256) that pins what a report attacked.
"""

from .base import LoadedData, Source, digest
from .loader import load_dataset
from .selection import select_indices
from .vision import clear_cache

__all__ = ["LoadedData", "Source", "clear_cache", "digest", "load_dataset", "select_indices"]
