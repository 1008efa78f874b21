"""Content-addressed files (checkpoints, reports, adversarial sets): `<root>/ab/abcdef…`.

A file is written under a temporary name and renamed into place once its sha256 is known, so
a crash never leaves a half-written artifact under a real name, and storing the same bytes
twice (a redelivered job) stores them once.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


class TooLarge(ValueError):
    def __init__(self, limit: int):
        super().__init__(f"larger than the limit of {limit} bytes")
        self.limit = limit


class ArtifactStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def put_chunks(self, chunks: Iterable[bytes], limit: int | None = None
                   ) -> tuple[str, int, bool]:
        """Stream chunks to disk; returns (sha256, size, whether these bytes are new to the
        store). Raises TooLarge past `limit`."""
        digest, size = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    size += len(chunk)
                    if limit is not None and size > limit:
                        raise TooLarge(limit)
                    digest.update(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            sha = digest.hexdigest()
            final = self.path(sha)
            final.parent.mkdir(exist_ok=True)
            new = not final.exists()
            os.replace(tmp, final)
            return sha, size, new
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_bytes(self, data: bytes) -> str:
        return self.put_chunks([data])[0]

    def put_file(self, path: str | os.PathLike) -> str:
        def chunks():
            with open(path, "rb") as f:
                while block := f.read(1 << 20):
                    yield block
        return self.put_chunks(chunks())[0]

    def read_bytes(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()
