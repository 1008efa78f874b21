"""Which checkpoint format a file is, judged by its bytes.

File names are user input (a ``.pt`` may be a TorchScript archive or a pickle); the content
decides which loader, and therefore which safety rules, apply.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from robustness.errors import ModelLoadError

SAFETENSORS = "safetensors"
STATE_DICT = "torch_state_dict"  # torch.save of a state_dict (zip or legacy pickle)
TORCHSCRIPT = "torchscript"
EXPORTED_PROGRAM = "exported_program"
FORMATS = (SAFETENSORS, STATE_DICT, TORCHSCRIPT, EXPORTED_PROGRAM)
WEIGHTS_ONLY_FORMATS = (SAFETENSORS, STATE_DICT)

# safetensors caps its JSON header at 100 MB; a larger length field means "not safetensors".
MAX_SAFETENSORS_HEADER = 100_000_000
_UNKNOWN = ("not a safetensors, TorchScript, torch.export or weights-only checkpoint")


def safetensors_header_length(head: bytes) -> int | None:
    """The header length when ``head`` opens like a safetensors file, else None."""
    if len(head) < 9 or head[8:9] != b"{":
        return None
    n = int.from_bytes(head[:8], "little")
    return n if 2 <= n <= MAX_SAFETENSORS_HEADER else None


# torch writes its archives uncompressed, so a large expansion ratio is never a real
# checkpoint: it is a zip bomb that would exhaust memory when torch inflates the entry.
MAX_COMPRESSION_RATIO = 100
MAX_ARCHIVE_BYTES = 64 * 1024**3


def zip_entries(path: Path) -> list[str]:
    """Entry names without the archive's root folder (torch writes ``<root>/data.pkl`` etc.).

    Refuses archives whose declared sizes would expand far beyond the file (zip bombs)
    before any loader inflates them."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelLoadError(f"corrupt zip archive: {exc}; {_UNKNOWN}") from None
    total = sum(i.file_size for i in infos)
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED and \
                info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            raise ModelLoadError(f"zip archive entry {info.filename!r} expands "
                                 f"{info.file_size / max(info.compress_size, 1):.0f}-fold "
                                 f"({info.file_size} bytes): refused as a zip bomb (torch "
                                 f"writes checkpoints uncompressed)")
    if total > MAX_ARCHIVE_BYTES:
        raise ModelLoadError(f"zip archive declares {total} bytes of content, more than "
                             f"{MAX_ARCHIVE_BYTES}: refused")
    return [i.filename.split("/", 1)[1] if "/" in i.filename else i.filename for i in infos]


def detect_format(path: str | Path) -> str:
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(16)
    if safetensors_header_length(head) is not None:
        return SAFETENSORS
    if head.startswith(b"PK\x03\x04"):
        names = zip_entries(path)
        if "archive_format" in names:
            return EXPORTED_PROGRAM
        if "serialized_exported_program.json" in names:
            raise ModelLoadError("this torch.export archive uses the pre-2.8 layout, which torch "
                                 "reads with an unsafe pickle fallback; re-save it with "
                                 "torch.export.save from a current torch")
        if "constants.pkl" in names and any(n.startswith("code/") for n in names):
            return TORCHSCRIPT
        if "data.pkl" in names:
            return STATE_DICT
        raise ModelLoadError(f"zip archive without a torch layout: {_UNKNOWN}")
    if head[:1] == b"\x80":  # pickle protocol >= 2: torch.save's legacy (non-zip) format
        return STATE_DICT
    raise ModelLoadError(f"unrecognized file content: {_UNKNOWN}")
