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


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """Where data sets are found: the argument, ROBUSTNESS_DATA_ROOT, else ``home()/data``."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("ROBUSTNESS_DATA_ROOT")
    return Path(env).expanduser() if env else home() / "data"


def cache_dir(kind: str) -> Path:
    """A writable directory for derived files (e.g. unpacked data sets)."""
    path = home() / "cache" / kind
    path.mkdir(parents=True, exist_ok=True)
    return path
