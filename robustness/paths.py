"""Where state lives on disk, from the environment (one place, so CLI, service and workers agree)."""

import os
from pathlib import Path


def home() -> Path:
    """ROBUSTNESS_HOME, else the user's data directory (XDG on Linux)."""
    env = os.environ.get("ROBUSTNESS_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "robustness"


def named_data_root() -> Path | None:
    """The data root the user named (ROBUSTNESS_DATA_ROOT or a --data-root), if any."""
    env = os.environ.get("ROBUSTNESS_DATA_ROOT")
    return Path(env).expanduser() if env else None


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """Where data sets are found: the argument, ROBUSTNESS_DATA_ROOT, else ``home()/data``."""
    if explicit:
        return Path(explicit).expanduser()
    return named_data_root() or home() / "data"


def cache_dir(kind: str) -> Path:
    """A writable directory for derived files (e.g. unpacked data sets)."""
    path = home() / "cache" / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def use_data_root(path: str | os.PathLike) -> None:
    """Make `path` the data root of this process and the processes it starts (a command's
    --data-root): it is what `data_root()` and the service's settings then read."""
    os.environ["ROBUSTNESS_DATA_ROOT"] = str(path)
