"""Per-process caches, so a worker that runs many audits of one model on one data set loads
each once. Models are keyed by the checkpoint's sha256 and metadata; data sets by their spec
and data root, and report the sha256 of the tensors they hold."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable


class LRU:
    def __init__(self, size: int):
        self.size = size
        self.items: OrderedDict = OrderedDict()

    def get(self, key, make: Callable):
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = make()
        if self.size > 0:
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return value


def key_of(*parts) -> str:
    return json.dumps(parts, sort_keys=True, default=str)
