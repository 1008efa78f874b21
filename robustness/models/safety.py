"""Reading untrusted checkpoints without running code from them.

Uploaded files come from anyone holding an API key and are loaded inside workers, so every
byte that reaches an unpickler must first pass ``torch.load(weights_only=True)``, whose
unpickler only rebuilds tensors and plain containers. ``torch.export.load`` is the hard case: it
unpickles some archive entries with ``weights_only=False`` or plain ``pickle``, dlopens
AOTInductor libraries, ``sympify``s (i.e. ``eval``s) symbolic shapes and turns names and targets
from its JSON into generated Python. :func:`check_exported_archive` vets all of that first.
"""

from __future__ import annotations

import io
import json
import re
import warnings
from typing import Any

import torch

from robustness.errors import ModelLoadError


def _unpickling_reason(exc: Exception) -> str:
    """The one informative line of torch's long weights-only error (e.g. the blocked global)."""
    text = str(exc)
    found = re.search(r"(unsupported GLOBAL [\w.]+|Unsupported global: GLOBAL [\w.]+"
                      r"|Unsupported operand \d+)", text, re.IGNORECASE)
    if found:
        return found.group(1)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else type(exc).__name__


_WEIGHTS_ADVICE = ("; only weights are accepted - save model.state_dict() (safetensors "
                   "preferred) or use torch.export")


def safe_torch_load(source: Any, what: str, advice: str = _WEIGHTS_ADVICE) -> Any:
    """``torch.load(weights_only=True)`` on CPU, with refusals turned into a clear error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4"
            return torch.load(source, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - untrusted input: any failure is a user error
        if "weights only load failed" in str(exc).lower():
            raise ModelLoadError(
                f"refused to unpickle {what}: it holds Python objects other than tensors "
                f"({_unpickling_reason(exc)}){advice}") from None
        raise ModelLoadError(f"cannot read {what}: {str(exc)[:300]} (a corrupt file, or not a "
                             f"safetensors, TorchScript, torch.export or weights-only "
                             f"checkpoint)") from None


# --- torch.export archives ------------------------------------------------------------------

# Entries a plain exported program consists of; anything else (AOTInductor shared libraries,
# ExecuTorch or MTIA payloads, the pre-2.8 layout read with a pickle fallback) is refused.
_PLAIN_ENTRIES = {"archive_format", "archive_version", "byteorder", "version", ".data/version",
                  ".data/serialization_id", ".format_version", ".storage_alignment"}
_MODEL_JSON = re.compile(r"models/[\w.-]+\.json")
_CONFIG_JSON = re.compile(r"data/(weights|constants)/[\w.-]+_(weights|constants)_config\.json")
_PAYLOAD = re.compile(r"data/(weights|constants|sample_inputs)/[\w.-]+")

# Graph node targets: ATen/prims operators, higher-order operators (whose subgraphs are checked
# too), and symbolic-shape arithmetic. Resolving any other dotted path under ``torch`` could
# reach e.g. ``torch.ops.load_library`` or ``torch.hub.load``.
_OP_TARGET = re.compile(r"torch\.ops\.(aten|prims|higher_order)\.(\w+)(\.[A-Za-z]\w*)?")
_ATEN_DUNDERS = {"__and__", "__or__", "__xor__", "__lshift__", "__rshift__"}
_SYM_TARGET = re.compile(r"torch\.(sym_\w+|_sym_\w+)|math\.[a-z]\w*")
_OPERATOR_NAMES = {"getitem", "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "neg",
                   "pos", "abs", "eq", "ne", "lt", "le", "gt", "ge", "and_", "or_", "xor",
                   "not_", "invert", "lshift", "rshift"}
_OTHER_TARGETS = {"torch._assert", "torch._check", "torch._check_is_size", "torch._assert_async",
                  "torch._C._set_grad_enabled", "torch.amp.autocast_mode._enter_autocast",
                  "torch.amp.autocast_mode._exit_autocast"}
# Operators that touch the file system (from_file can map a file writable into a tensor).
_DENIED_OPS = {"from_file", "save", "_load_for_mobile"}

# Names end up in generated Python source (``def forward(self, <name>)``, ``getattr(self, "…")``).
_NAME = re.compile(r"[A-Za-z0-9_.]*")
_NAME_KEYS = {"name", "as_name", "parameter_name", "buffer_name", "tensor_constant_name",
              "custom_obj_name", "user_input_name", "fqn", "forward_arg_names", "field_names",
              "input_names", "output_names"}

# ``sympy.sympify`` evaluates its string as Python; allow only what shape expressions use.
_SYM_TOKEN = re.compile(r"\s+|\d+(\.\d+)?(e[+-]?\d+)?|'[A-Za-z]\w*'|[A-Za-z_]\w*"
                        r"|\*\*|//|[-+*/%(),<>=!&|~^]")
_SYM_WORDS = {"Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Max", "Min", "Mod",
              "Abs", "floor", "ceiling", "sqrt", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or",
              "Not", "ITE", "Piecewise", "True", "False", "true", "false", "oo", "zoo", "nan",
              "positive", "negative", "nonnegative", "nonpositive", "integer", "real",
              "finite", "zero", "nonzero", "even", "odd", "commutative", "FloorDiv",
              "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt", "FloorToInt",
              "CeilDiv", "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv",
              "IntTrueDiv", "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt",
              "RoundToInt", "RoundDecimal", "ToFloat", "Identity", "OpaqueUnaryFn_sqrt"}
_SYM_NAME = re.compile(r"[a-z]{1,3}\d+")  # s0, s77, u3, ...


def _refuse(reason: str) -> ModelLoadError:
    return ModelLoadError(f"refused torch.export archive: {reason}")


def _check_target(target: str) -> None:
    op = _OP_TARGET.fullmatch(target)
    if op:
        name = op.group(2)
        if name in _DENIED_OPS:
            raise _refuse(f"the graph calls {target}, which accesses files")
        if not name.startswith("__") or name in _ATEN_DUNDERS:  # no Python attribute tricks
            return
    if _SYM_TARGET.fullmatch(target) or target in _OTHER_TARGETS:
        return
    if target.startswith("_operator.") and target[len("_operator."):] in _OPERATOR_NAMES:
        return
    raise _refuse(f"the graph calls '{target[:100]}', which is not an ATen, prims or "
                  f"higher-order operator")


def _check_sym_expr(expr: str) -> None:
    pos = 0
    while pos < len(expr):
        m = _SYM_TOKEN.match(expr, pos)
        word = m.group(0) if m else None
        is_word = m is not None and (word[0].isalpha() or word[0] == "_")
        if m is None or (is_word and word not in _SYM_WORDS and not _SYM_NAME.fullmatch(word)):
            raise _refuse(f"symbolic shape expression {expr[:100]!r} is not a plain "
                          f"arithmetic expression")
        pos = m.end()


def _check_graph_json(node: Any) -> None:
    """Walk the serialized program: operator targets, names and symbolic expressions."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("target", "as_operator") and isinstance(value, str):
                _check_target(value)
            elif key == "expr_str" and isinstance(value, str):
                _check_sym_expr(value)
            elif key in _NAME_KEYS:
                for name in value if isinstance(value, list) else [value]:
                    if isinstance(name, str) and not _NAME.fullmatch(name):
                        raise _refuse(f"name {name[:100]!r} is not a plain identifier path")
            _check_graph_json(value)
    elif isinstance(node, list):
        for item in node:
            _check_graph_json(item)


def _check_payload_config(name: str, config: dict, raw: set[str]) -> None:
    """Record which payloads are raw bytes; refuse pickled custom/opaque object constants."""
    directory = name.rsplit("/", 1)[0] + "/"
    for fqn, meta in (config.get("config") or {}).items():
        if not isinstance(fqn, str) or not _NAME.fullmatch(fqn):
            raise _refuse(f"weight name {str(fqn)[:100]!r} is not a plain identifier path")
        path = meta.get("path_name", "") if isinstance(meta, dict) else ""
        if not isinstance(path, str) or not re.fullmatch(r"[\w.-]+", path):
            raise _refuse(f"payload path {str(path)[:100]!r} of {fqn} is malformed")
        if path.startswith(("custom_obj_", "opaque_obj_")):
            raise _refuse(f"constant {fqn} is a custom or opaque Python object, which torch "
                          f"would unpickle; only tensor constants are accepted")
        if not meta.get("use_pickle"):
            raw.add(directory + path)


def check_exported_archive(data: bytes) -> None:
    """Refuse an export archive unless loading it can only rebuild tensors and ATen graphs.

    Uses torch's own archive reader so the entries vetted are exactly those it will read.
    """
    from torch.export.pt2_archive._package import PT2ArchiveReader

    try:
        reader = PT2ArchiveReader(io.BytesIO(data))
        names = reader.get_file_names()
    except Exception as exc:  # noqa: BLE001 - untrusted input: any failure is a user error
        raise _refuse(f"unreadable archive ({str(exc)[:200]})") from None
    _check_zip_layout(data, names)
    if "archive_format" not in names or reader.read_string("archive_format") != "pt2":
        raise _refuse("archive_format is not 'pt2'")

    raw: set[str] = set()
    for name in names:
        if _CONFIG_JSON.fullmatch(name):
            _check_payload_config(name, _read_json(reader, name), raw)
        elif _MODEL_JSON.fullmatch(name):
            _check_graph_json(_read_json(reader, name))
    for name in names:
        if name in _PLAIN_ENTRIES or name.startswith("extra/") or name in raw \
                or _MODEL_JSON.fullmatch(name) or _CONFIG_JSON.fullmatch(name):
            continue
        if not _PAYLOAD.fullmatch(name):
            raise _refuse(f"unexpected entry '{name[:100]}' (AOTInductor, ExecuTorch and "
                          f"pre-2.8 archives are not accepted; save with torch.export.save)")
        # Pickled weights, legacy weight files, sample inputs: torch unpickles these bytes,
        # sometimes with weights_only=False, so they must pass the weights-only unpickler.
        safe_torch_load(io.BytesIO(reader.read_bytes(name)), f"archive entry '{name}'", "")


def _check_zip_layout(data: bytes, names: list[str]) -> None:
    """One root folder and the same entries for Python's zipfile as for torch's reader.

    ``torch.export.load`` falls back to a zipfile-based reader of the old layout when the new
    one fails; an archive that the two readers see differently could smuggle entries past us.
    """
    import zipfile

    try:
        listed = zipfile.ZipFile(io.BytesIO(data)).namelist()
    except zipfile.BadZipFile as exc:
        raise _refuse(f"corrupt zip ({exc})") from None
    roots = {n.split("/", 1)[0] for n in listed}
    stripped = [n.split("/", 1)[1] if "/" in n else "" for n in listed]
    if len(roots) != 1 or "" in stripped or len(set(stripped)) != len(stripped) \
            or set(stripped) != set(names):
        raise _refuse("its zip entries are not one folder of unique names")


def _read_json(reader: Any, name: str) -> Any:
    try:
        return json.loads(reader.read_string(name))
    except Exception as exc:  # noqa: BLE001 - untrusted input: any failure is a user error
        raise _refuse(f"entry '{name}' is not valid JSON ({str(exc)[:200]})") from None


# --- TorchScript ----------------------------------------------------------------------------

# TorchScript's own unpickler only builds TorchScript types, but its code can call any ATen op;
# refuse the ones that read or write files.
_TS_FILE_OPS = re.compile(r"\bfrom_file\b|\b(torch|aten)\s*\.\s*(save|load)\b")


def check_torchscript(path: str) -> None:
    """Scan the archive's code with torch's own reader (the one ``torch.jit.load`` uses)."""
    try:
        reader = torch._C.PyTorchFileReader(str(path))
        records = reader.get_all_records()
    except Exception as exc:  # noqa: BLE001 - untrusted input: any failure is a user error
        raise ModelLoadError(f"unreadable TorchScript archive ({str(exc)[:200]})") from None
    for name in records:
        if name.startswith("code/") and name.endswith(".py"):
            code = bytes(reader.get_record(name)).decode("utf-8", "replace")
            found = _TS_FILE_OPS.search(code)
            if found:
                raise ModelLoadError(f"refused TorchScript archive: its code calls "
                                     f"{found.group(0)}, which accesses files")
