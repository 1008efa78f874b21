"""Peak memory while a job runs, for its report's provenance: how big a machine an audit,
a certification or a training needs, and whether a worker's process grows from job to job.

The OS keeps only a process's lifetime peak resident set, so the resident set is sampled from
/proc every few milliseconds while the job runs (Linux; elsewhere the figures are None).
On CUDA, torch's own peak of allocated bytes is reset when the job starts and read when it
ends.
"""

from __future__ import annotations

import os
import threading
from typing import Self

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int | None:
    """This process's resident set size now, or None where /proc is not there."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """`with PeakMemory(device) as m: ...`, then `m.figures()`."""

    def __init__(self, device=None, interval: float = 0.01):
        self.device = torch.device(device) if device is not None else None
        self.interval = interval
        self.start = self.peak = self.end = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            now = resident_bytes()
            if now is not None and (self.peak is None or now > self.peak):
                self.peak = now

    def __enter__(self) -> Self:
        self.start = self.peak = resident_bytes()
        if self._cuda():
            torch.cuda.reset_peak_memory_stats(self.device)
        if self.start is not None:
            self._thread = threading.Thread(target=self._sample, name="peak-memory",
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.end = resident_bytes()
        if self.end is not None:
            self.peak = max(self.peak or 0, self.end)

    def _cuda(self) -> bool:
        return self.device is not None and self.device.type == "cuda"

    def figures(self) -> dict:
        return {"rss_start_bytes": self.start, "rss_peak_bytes": self.peak,
                "rss_end_bytes": self.end,
                "cuda_peak_allocated_bytes": int(torch.cuda.max_memory_allocated(self.device))
                if self._cuda() else None}
