"""Model registry, metadata, the [0, 1] wrapper and safe checkpoint loading."""

import hashlib
import io
import json
import os
import pickle
import random
import warnings
import zipfile

import pytest
import torch
from torch import nn

from robustness.errors import ModelLoadError
from robustness.models import (
    ARCHITECTURES,
    Classifier,
    ModelMetadata,
    build_model,
    load_model,
    save_state_dict,
)

CPU = "cpu"
MADRY8 = {"architecture": "madry_mnist", "num_classes": 10, "input_shape": [1, 8, 8]}


class Tiny(nn.Module):
    """A custom architecture (not in the registry) for the graph-carrying formats."""

    def __init__(self, channels=1, num_classes=3):
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 6 * 6, num_classes)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def _tiny(channels=1):
    torch.manual_seed(0)
    net = Tiny(channels)
    with torch.no_grad():  # non-trivial BN statistics, so eval mode matters
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _export(net, path, channels=1, dynamic=True):
    x = torch.rand(2 if dynamic else 1, channels, 8, 8)
    shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    torch.export.save(torch.export.export(net, (x,), dynamic_shapes=shapes), path)


def _script(net, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(net).save(str(path))


def _madry(seed=0):
    torch.manual_seed(seed)
    return build_model("madry_mnist", 10, (1, 8, 8)).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One export per test module: torch.export takes seconds."""
    path = tmp_path_factory.mktemp("export") / "tiny.pt2"
    net = _tiny()
    _export(net, path)
    return net, path


def _rewrite_zip(src, dst, edit):
    """Copy a zip archive, passing each (name, bytes) through ``edit``; extra entries appended."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        root = zin.namelist()[0].split("/", 1)[0]
        for name in zin.namelist():
            zout.writestr(name, edit(name.split("/", 1)[1], zin.read(name)))
        for name, data in getattr(edit, "extra", {}).items():
            zout.writestr(f"{root}/{name}", data)


class Payload:
    """Unpickling this runs a shell command: the attack every loader must refuse."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# --- registry -------------------------------------------------------------------------------

@pytest.mark.parametrize("arch,shape", [
    ("madry_mnist", (1, 28, 28)), ("madry_mnist", (1, 8, 8)), ("lenet_mnist", (1, 28, 28)),
    ("lenet_mnist", (3, 12, 12)), ("preact_resnet18", (3, 32, 32)),
    ("preact_resnet18", (1, 8, 8)), ("torchvision:resnet18", (3, 32, 32))])
def test_build_model_output_shape(arch, shape):
    net = build_model(arch, 7, shape).eval()
    with torch.no_grad():
        out = net(torch.rand(3, *shape))
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()


def test_madry_mnist_layout():
    net = build_model("madry_mnist", 10, (1, 28, 28))
    shapes = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert shapes == {"conv1.weight": [32, 1, 5, 5], "conv1.bias": [32],
                      "conv2.weight": [64, 32, 5, 5], "conv2.bias": [64],
                      "fc1.weight": [1024, 64 * 7 * 7], "fc1.bias": [1024],
                      "fc2.weight": [10, 1024], "fc2.bias": [10]}


def test_lenet_and_preact_layout():
    lenet = build_model("lenet_mnist", 10, (1, 28, 28))
    assert lenet.fc1.in_features == 16 * 5 * 5
    assert [lenet.fc2.out_features, lenet.fc3.out_features] == [84, 10]
    preact = build_model("preact_resnet18", 10, (3, 32, 32))
    # the usual 11,171,146 of PreAct-ResNet-18, plus the final BatchNorm(512)
    assert sum(p.numel() for p in preact.parameters()) == 11_171_146 + 2 * 512
    assert "layer2.0.shortcut.0.weight" in preact.state_dict()


def test_registry_errors():
    assert "madry_mnist" in ARCHITECTURES and "torchvision:<name>" in ARCHITECTURES
    with pytest.raises(ModelLoadError, match="unknown architecture 'vgg'.*madry_mnist.*"
                                             "lenet_mnist.*preact_resnet18"):
        build_model("vgg", 10, (1, 28, 28))
    with pytest.raises(ModelLoadError, match="unknown torchvision .*'resnet19'.*resnet18"):
        build_model("torchvision:resnet19", 10, (3, 32, 32))
    with pytest.raises(ModelLoadError, match="lenet_mnist needs inputs of at least 12x12"):
        build_model("lenet_mnist", 10, (1, 8, 8))
    with pytest.raises(ModelLoadError, match="madry_mnist needs .* 4x4"):
        build_model("madry_mnist", 10, (1, 3, 28))
    with pytest.raises(ModelLoadError, match="3-channel"):
        build_model("torchvision:resnet18", 10, (1, 32, 32))


# --- metadata -------------------------------------------------------------------------------

@pytest.mark.parametrize("data,field", [
    ({"num_classes": 1}, "num_classes"),
    ({"input_shape": [28, 28]}, "input_shape"),
    ({"input_shape": [1, 0, 28]}, "input_shape"),
    ({"preprocessing": {"mean": [0.5], "std": [0.0]}}, "preprocessing.std"),
    ({"input_shape": [3, 8, 8], "preprocessing": {"mean": [0.1, 0.2], "std": [1]}},
     "preprocessing.mean"),
    ({"num_classes": 3, "labels": ["a", "b"]}, "labels"),
    ({"num_clases": 3}, "num_clases"),
])
def test_metadata_errors_name_the_field(data, field):
    with pytest.raises(ModelLoadError, match=rf"invalid model metadata: .*{field}"):
        ModelMetadata.parse(data)


def test_metadata_parse_json():
    meta = ModelMetadata.parse(json.dumps({**MADRY8, "labels": [str(i) for i in range(10)]}))
    assert meta.input_shape == [1, 8, 8] and meta.labels[9] == "9"


# --- round trips ----------------------------------------------------------------------------

def _check_same(clf, net, shape=(1, 8, 8)):
    x = torch.rand(5, *shape)
    with torch.no_grad():
        assert torch.equal(clf(x), net(x))
    # Attacks differentiate w.r.t. the input; parameters are frozen.
    x.requires_grad_(True)
    clf(x).logsumexp(1).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in clf.parameters())


def test_safetensors_round_trip(tmp_path):
    net = _madry()
    path = tmp_path / "m.safetensors"
    save_state_dict(net, path)
    clf = load_model(path, MADRY8, device=CPU)
    assert isinstance(clf, Classifier) and clf.format == "safetensors"
    assert clf.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert clf.metadata.num_classes == 10 and clf.metadata.input_shape == [1, 8, 8]
    assert not clf.training
    _check_same(clf, net)


def test_safetensors_header_metadata_and_wrapper_unwrapping(tmp_path):
    net = _madry()
    clf = Classifier(net, ModelMetadata.parse({**MADRY8, "name": "m"}))
    path = tmp_path / "m.safetensors"
    save_state_dict(clf, path)  # stores the net's weights and the metadata
    loaded = load_model(path, {"name": "renamed"}, device=CPU)
    assert loaded.metadata.name == "renamed" and loaded.metadata.architecture == "madry_mnist"
    _check_same(loaded, net)


@pytest.mark.parametrize("wrap", [
    lambda sd: sd,
    lambda sd: {"state_dict": sd, "epoch": 3},
    lambda sd: {"model_state_dict": {f"module.{k}": v for k, v in sd.items()}},
    lambda sd: {"model": {f"net.{k}": v for k, v in sd.items()}, "optimizer": {}},
])
def test_torch_state_dict_round_trip(tmp_path, wrap):
    net = _madry()
    path = tmp_path / "m.pt"
    torch.save(wrap(net.state_dict()), path)
    clf = load_model(path, MADRY8, device=CPU)
    assert clf.format == "torch_state_dict"
    _check_same(clf, net)


def test_legacy_torch_save_round_trip(tmp_path):
    net = _madry()
    path = tmp_path / "m.pth"
    torch.save(net.state_dict(), path, _use_new_zipfile_serialization=False)
    assert path.read_bytes()[:1] == b"\x80"
    _check_same(load_model(path, MADRY8, device=CPU), net)


def test_default_input_shape_for_registry_architecture(tmp_path):
    torch.manual_seed(0)
    net = build_model("lenet_mnist", 10, (1, 28, 28)).eval()
    path = tmp_path / "lenet.safetensors"
    save_state_dict(net, path)
    clf = load_model(path, {"architecture": "lenet_mnist", "num_classes": 10}, device=CPU)
    assert clf.metadata.input_shape == [1, 28, 28]
    _check_same(clf, net, (1, 28, 28))


def test_torchscript_round_trip(tmp_path):
    net = _tiny()
    path = tmp_path / "tiny.ts"
    _script(net, path)
    clf = load_model(path, {"input_shape": [1, 8, 8]}, device=CPU)
    assert clf.format == "torchscript"
    assert clf.metadata.num_classes == 3  # inferred from the forward pass
    assert not clf.net.training
    _check_same(clf, net)


def test_exported_program_round_trip(exported):
    net, path = exported
    clf = load_model(path, device=CPU)
    assert clf.format == "exported_program"
    # input_shape from the program's static dims, num_classes from the forward pass
    assert clf.metadata.input_shape == [1, 8, 8] and clf.metadata.num_classes == 3
    clf.eval()  # exported modules refuse .eval(); the wrapper must not pass it on
    _check_same(clf, net)
    with torch.no_grad():  # dynamic batch: any batch size runs
        assert torch.equal(clf(torch.ones(1, 1, 8, 8)), net(torch.ones(1, 1, 8, 8)))


def test_format_is_detected_from_content_not_name(tmp_path, exported):
    net = _madry()
    save_state_dict(net, tmp_path / "weights.pt")
    assert load_model(tmp_path / "weights.pt", MADRY8, device=CPU).format == "safetensors"
    (tmp_path / "model.safetensors").write_bytes(exported[1].read_bytes())
    assert load_model(tmp_path / "model.safetensors", device=CPU).format == "exported_program"


def test_preprocessing_is_applied_inside(tmp_path):
    torch.manual_seed(0)
    net = build_model("lenet_mnist", 5, (3, 12, 12)).eval()
    path = tmp_path / "m.safetensors"
    save_state_dict(net, path)
    mean, std = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]
    meta = {"architecture": "lenet_mnist", "num_classes": 5, "input_shape": [3, 12, 12],
            "preprocessing": {"mean": mean, "std": std}}
    clf = load_model(path, meta, device=CPU)
    assert clf.mean.shape == (1, 3, 1, 1) and clf.std.shape == (1, 3, 1, 1)
    x = torch.rand(4, 3, 12, 12)
    manual = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(clf(x), net(manual), atol=1e-6)
        assert not torch.allclose(clf(x), net(x), atol=1e-3)
    # one value broadcasts over the channels
    meta["preprocessing"] = {"mean": [0.5], "std": [0.25]}
    clf = load_model(path, meta, device=CPU)
    with torch.no_grad():
        assert torch.allclose(clf(x), net((x - 0.5) / 0.25), atol=1e-6)


def test_labels_are_kept_and_checked(tmp_path, exported):
    labels = ["cat", "dog", "bird"]
    assert load_model(exported[1], {"labels": labels}, device=CPU).metadata.labels == labels
    with pytest.raises(ModelLoadError, match="labels has 2 entries but num_classes is 3"):
        load_model(exported[1], {"labels": labels[:2]}, device=CPU)


# --- errors ---------------------------------------------------------------------------------

def _madry_file(tmp_path):
    path = tmp_path / "m.safetensors"
    save_state_dict(_madry(), path)
    return path


def test_weights_only_needs_architecture_and_classes(tmp_path):
    path = _madry_file(tmp_path)
    with pytest.raises(ModelLoadError, match="metadata.architecture is required"):
        load_model(path, {"num_classes": 10}, device=CPU)
    with pytest.raises(ModelLoadError, match="metadata.num_classes is required"):
        load_model(path, {"architecture": "madry_mnist"}, device=CPU)
    with pytest.raises(ModelLoadError, match="unknown architecture 'madry'"):
        load_model(path, {**MADRY8, "architecture": "madry"}, device=CPU)


def test_mismatch_names_keys_and_shapes(tmp_path):
    state = _madry().state_dict()
    state["extra.weight"] = torch.zeros(3)
    del state["fc2.bias"]
    path = tmp_path / "m.pt"
    torch.save(state, path)
    with pytest.raises(ModelLoadError) as err:
        load_model(path, {**MADRY8, "input_shape": [3, 8, 8]}, device=CPU)
    msg = str(err.value)
    assert "missing keys: fc2.bias" in msg
    assert "unexpected keys: extra.weight" in msg
    assert "conv1.weight: checkpoint [32,1,5,5], madry_mnist expects [32,3,5,5]" in msg
    assert "fc2.weight" not in msg  # shapes that agree are not listed


def test_mismatch_on_num_classes_and_input_size(tmp_path):
    path = _madry_file(tmp_path)
    with pytest.raises(ModelLoadError) as err:
        load_model(path, {**MADRY8, "num_classes": 7, "input_shape": [1, 28, 28]}, device=CPU)
    msg = str(err.value)
    assert "fc1.weight: checkpoint [1024,256], madry_mnist expects [1024,3136]" in msg
    assert "fc2.weight: checkpoint [10,1024], madry_mnist expects [7,1024]" in msg
    assert "fc2.bias: checkpoint [10], madry_mnist expects [7]" in msg


def test_non_finite_weights(tmp_path):
    net = _madry()
    with torch.no_grad():
        net.conv2.bias[3] = float("nan")
        net.fc1.weight[0, 0] = float("inf")
    path = tmp_path / "m.safetensors"
    save_state_dict(net, path)
    with pytest.raises(ModelLoadError, match="NaN or Inf values in 2 tensor.*conv2.bias, "
                                             "fc1.weight"):
        load_model(path, MADRY8, device=CPU)


def test_wrong_num_classes_for_graph_formats(tmp_path, exported):
    with pytest.raises(ModelLoadError, match="model outputs 3 classes but metadata says "
                                             "num_classes=10"):
        load_model(exported[1], {"num_classes": 10}, device=CPU)
    path = tmp_path / "tiny.ts"
    _script(_tiny(), path)
    with pytest.raises(ModelLoadError, match="input_shape .* is required for torchscript"):
        load_model(path, {"num_classes": 3}, device=CPU)
    with pytest.raises(ModelLoadError, match="model failed on a batch of 2 inputs of shape "
                                             r"\[1, 28, 28\]"):
        load_model(path, {"input_shape": [1, 28, 28]}, device=CPU)


def test_static_batch_export_says_how_to_fix(tmp_path):
    path = tmp_path / "static.pt2"
    _export(_tiny(), path, dynamic=False)
    with pytest.raises(ModelLoadError, match="dynamic batch dimension"):
        load_model(path, device=CPU)


UNKNOWN = "not a safetensors, TorchScript, torch.export or weights-only checkpoint"


@pytest.mark.parametrize("content", [
    b"", b"hello world, not a model", b"PK\x03\x04garbage",
    random.Random(0).randbytes(4096), b"\x89PNG\r\n\x1a\n" + bytes(100)])
def test_garbage_is_refused(tmp_path, content):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=f"{UNKNOWN}|corrupt zip"):
        load_model(path, MADRY8, device=CPU)


@pytest.mark.parametrize("seed", range(8))
def test_garbage_that_starts_like_a_pickle_is_refused_unread(tmp_path, seed):
    """1 in 256 random files starts with a pickle's first byte (torch.save's legacy format):
    the weights-only unpickler refuses it, whichever opcode or structure it trips on."""
    path = tmp_path / "model.pt"
    path.write_bytes(b"\x80" + random.Random(seed).randbytes(4095))
    with pytest.raises(ModelLoadError, match=f"refused to unpickle the checkpoint|{UNKNOWN}"):
        load_model(path, MADRY8, device=CPU)


def test_truncated_safetensors(tmp_path):
    data = _madry_file(tmp_path).read_bytes()
    for cut in (len(data) - 1000, 200, 20):
        path = tmp_path / f"cut{cut}.safetensors"
        path.write_bytes(data[:cut])
        with pytest.raises(ModelLoadError, match="truncated"):
            load_model(path, MADRY8, device=CPU)


def test_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match="model file not found"):
        load_model(tmp_path / "nope.safetensors", MADRY8, device=CPU)


# --- malicious files: refused, and the payload never runs -----------------------------------

def test_payload_is_live(tmp_path):
    """Control: the payload used below really runs code when unpickled normally."""
    marker = tmp_path / "CONTROL"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("kind", ["torch_save", "torch_save_in_dict", "pickle_p2", "pickle_p4",
                                  "legacy_torch_save"])
def test_malicious_pickle_is_refused(tmp_path, kind):
    marker = tmp_path / "MARKER"
    path = tmp_path / "model.pt"
    if kind == "torch_save":
        torch.save(Payload(marker), path)
    elif kind == "torch_save_in_dict":
        torch.save({"state_dict": _madry().state_dict(), "x": Payload(marker)}, path)
    elif kind == "legacy_torch_save":
        torch.save(Payload(marker), path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(Payload(marker), protocol=2 if kind == "pickle_p2" else 4))
    with pytest.raises(ModelLoadError, match="refused to unpickle"):
        load_model(path, MADRY8, device=CPU)
    assert not marker.exists()


def test_malicious_exported_sample_inputs(tmp_path, exported):
    marker = tmp_path / "MARKER"
    buf = io.BytesIO()
    torch.save(Payload(marker), buf)
    evil = tmp_path / "evil.pt2"
    _rewrite_zip(exported[1], evil, lambda name, data: buf.getvalue()
                 if name == "data/sample_inputs/model.pt" else data)
    with pytest.raises(ModelLoadError, match="refused to unpickle archive entry "
                                             "'data/sample_inputs/model.pt'"):
        load_model(evil, device=CPU)
    assert not marker.exists()
    # Control: torch.export.load itself falls back to weights_only=False and runs it.
    control = tmp_path / "CONTROL"
    buf = io.BytesIO()
    torch.save(Payload(control), buf)
    _rewrite_zip(exported[1], evil, lambda name, data: buf.getvalue()
                 if name == "data/sample_inputs/model.pt" else data)
    # It fails only *after* unpickling: on the result's type, or (under pytest's log capture)
    # on its own malformed warning about the fallback.
    with pytest.raises((AssertionError, TypeError)):
        torch.export.load(evil)
    assert control.exists()


def test_malicious_symbolic_shape_expression(tmp_path, exported):
    """torch sympify()s shape expressions, i.e. evaluates them as Python."""
    marker = tmp_path / "MARKER"
    code = f"__import__('os').system('touch {marker}') or "

    def edit(name, data):
        if name != "models/model.json":
            return data
        text = data.decode()
        assert "Symbol('s" in text
        return text.replace("Symbol('s", code + "Symbol('s").encode()

    evil = tmp_path / "evil.pt2"
    _rewrite_zip(exported[1], evil, edit)
    with pytest.raises(ModelLoadError, match="symbolic shape expression .* is not a plain "
                                             "arithmetic expression"):
        load_model(evil, device=CPU)
    assert not marker.exists()


def test_exported_archive_entries_that_run_code_are_refused(tmp_path, exported):
    def opaque(name, data):
        if name == "data/constants/model_constants_config.json":
            return json.dumps({"config": {"c": {"path_name": "opaque_obj_0", "is_param": False,
                                                "use_pickle": True, "tensor_meta": None}}})
        return data
    opaque.extra = {"data/constants/opaque_obj_0": pickle.dumps(Payload(tmp_path / "M1"))}
    _rewrite_zip(exported[1], tmp_path / "opaque.pt2", opaque)
    with pytest.raises(ModelLoadError, match="constant c is a custom or opaque Python object"):
        load_model(tmp_path / "opaque.pt2", device=CPU)

    def aoti(name, data):
        return data
    aoti.extra = {"data/aotinductor/model/model.so": b"\x7fELF"}
    _rewrite_zip(exported[1], tmp_path / "aoti.pt2", aoti)
    with pytest.raises(ModelLoadError, match="unexpected entry 'data/aotinductor/model/model.so'"):
        load_model(tmp_path / "aoti.pt2", device=CPU)

    def target(name, data):
        if name == "models/model.json":
            return data.replace(b'"torch.ops.aten.relu.default"', b'"torch.ops.load_library"')
        return data
    _rewrite_zip(exported[1], tmp_path / "target.pt2", target)
    with pytest.raises(ModelLoadError, match="calls 'torch.ops.load_library'"):
        load_model(tmp_path / "target.pt2", device=CPU)
    assert not (tmp_path / "M1").exists()


def test_torchscript_file_access_is_refused(tmp_path):
    path = tmp_path / "tiny.ts"
    _script(_tiny(), path)

    edited = []

    def edit(name, data):  # add a method that maps a file into a tensor
        if name.startswith("code/") and name.endswith(".py") and b"def forward(" in data:
            edited.append(name)
            return data.replace(b"def forward(", b"def unused(self) -> Tensor:\n"
                                b"    return torch.from_file(\"/etc/passwd\", False, 4)\n"
                                b"  def forward(", 1)
        return data
    _rewrite_zip(path, tmp_path / "evil.ts", edit)
    assert edited
    with pytest.raises(ModelLoadError, match="refused TorchScript archive: .*from_file"):
        load_model(tmp_path / "evil.ts", {"input_shape": [1, 8, 8]}, device=CPU)
