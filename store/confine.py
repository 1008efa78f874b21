"""What the service lets a job touch on a worker. The library reads any path its user names
(a local CLI user owns the machine); a service user names data only under the data root."""

from __future__ import annotations

from pathlib import PurePosixPath

from robustness.errors import SpecError


def confine_dataset_path(dataset) -> None:
    """Reject `dataset.path` values that are absolute or climb out of the data root."""
    path = getattr(dataset, "path", None)
    if path is None:
        return
    parts = PurePosixPath(path.replace("\\", "/")).parts
    if path.startswith(("/", "~")) or ".." in parts or (parts and ":" in parts[0]):
        raise SpecError(f"dataset.path: {path!r} must be relative to the data root, without "
                        f"'..' (the service reads data only under its data root)")
