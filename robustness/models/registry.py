"""Named architectures, so a weights-only checkpoint can be rebuilt without running user code.

A safetensors or ``.pt`` state_dict holds tensors only; the network that consumes them must come
from code we trust, i.e. from here (our own definitions or torchvision's). Networks are raw: they
take normalized inputs; preprocessing is the wrapper's job.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustness.errors import ModelLoadError

TORCHVISION_PREFIX = "torchvision:"
ARCHITECTURES = ("madry_mnist", "wong_mnist", "lenet_mnist", "preact_resnet18",
                 "torchvision:<name>")

# Used when metadata gives no input_shape for a weights-only checkpoint.
DEFAULT_INPUT_SHAPES = {"madry_mnist": (1, 28, 28), "wong_mnist": (1, 28, 28),
                        "lenet_mnist": (1, 28, 28),
                        "preact_resnet18": (3, 32, 32)}
TORCHVISION_INPUT_SHAPE = (3, 224, 224)


def default_input_shape(architecture: str) -> tuple[int, int, int] | None:
    if architecture.startswith(TORCHVISION_PREFIX):
        return TORCHVISION_INPUT_SHAPE
    return DEFAULT_INPUT_SHAPES.get(architecture)


def _require_size(name: str, input_shape, minimum: int, why: str = "") -> None:
    """Reject inputs too small for an architecture's poolings, naming the smallest size."""
    if input_shape[1] < minimum or input_shape[2] < minimum:
        raise ModelLoadError(f"{name} needs inputs of at least {minimum}x{minimum} pixels"
                             f"{f' ({why})' if why else ''}, got input_shape {list(input_shape)}")


class MadryMNIST(nn.Module):
    """The MNIST network of Madry et al. (2018), the usual baseline for PGD adversarial training."""

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int]):
        super().__init__()
        c, h, w = input_shape
        _require_size("madry_mnist", input_shape, 4, "two 2x2 poolings")
        self.conv1 = nn.Conv2d(c, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.fc1 = nn.Linear(64 * (h // 4) * (w // 4), 1024)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class WongMNIST(nn.Module):
    """The MNIST network of Wong, Rice & Kolter (2020): two strided convolutions and two dense
    layers. A tenth of madry_mnist's compute, so FGSM-AT on all of MNIST fits a 2-core CPU."""

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int]):
        super().__init__()
        c, h, w = input_shape
        _require_size("wong_mnist", input_shape, 4, "two stride-2 convolutions")
        self.conv1 = nn.Conv2d(c, 16, 4, stride=2, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 4, stride=2, padding=1)
        self.fc1 = nn.Linear(32 * (h // 4) * (w // 4), 100)
        self.fc2 = nn.Linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class LeNet(nn.Module):
    """LeNet-5 with ReLU: small enough to train and attack in seconds on a CPU."""

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int]):
        super().__init__()
        c, h, w = input_shape
        # conv1 keeps the size (padding 2), pool halves, conv2 (no padding) takes 4, pool halves.
        fh, fw = (h // 2 - 4) // 2, (w // 2 - 4) // 2
        _require_size("lenet_mnist", input_shape, 12)
        self.conv1 = nn.Conv2d(c, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * fh * fw, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc3(F.relu(self.fc2(x)))


class PreActBlock(nn.Module):
    """Pre-activation residual block (He et al., 2016): BN-ReLU before each convolution."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        # Key names (``shortcut.0``) follow the PreAct-ResNet checkpoints common in the
        # adversarial-training literature, so those load without renaming.
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + skip


class PreActResNet18(nn.Module):
    """PreAct-ResNet-18 for CIFAR-sized inputs, the standard model of robust-training benchmarks."""

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int]):
        super().__init__()
        c = input_shape[0]
        _require_size("preact_resnet18", input_shape, 8, "three stride-2 stages")
        self.conv1 = nn.Conv2d(c, 64, 3, stride=1, padding=1, bias=False)
        layers, in_planes = [], 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers.append(nn.Sequential(PreActBlock(in_planes, planes, stride),
                                        PreActBlock(planes, planes, 1)))
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.adaptive_avg_pool2d(F.relu(self.bn(out)), 1)
        return self.linear(out.flatten(1))


_BUILDERS = {"madry_mnist": MadryMNIST, "wong_mnist": WongMNIST, "lenet_mnist": LeNet,
             "preact_resnet18": PreActResNet18}


_COMMON_TORCHVISION = ("resnet18", "resnet50", "wide_resnet50_2", "vgg16", "mobilenet_v3_small",
                       "efficientnet_b0", "convnext_tiny", "vit_b_16")


def torchvision_names() -> list[str]:
    """Classification models only: detection/segmentation models do not return class logits."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _build_torchvision(name: str, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    import torchvision

    names = torchvision_names()
    if name not in names:
        common = [n for n in _COMMON_TORCHVISION if n in names]
        raise ModelLoadError(f"unknown torchvision classification model '{name}'; valid names "
                             f"include {', '.join(common)} ({len(names)} in all, see "
                             f"torchvision.models.list_models())")
    if input_shape[0] != 3:
        raise ModelLoadError(f"torchvision:{name} takes 3-channel inputs, but input_shape is "
                             f"{list(input_shape)}")
    try:
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    except Exception as exc:  # noqa: BLE001 - any constructor failure is a user error
        raise ModelLoadError(f"cannot build torchvision:{name} with num_classes={num_classes}: "
                             f"{exc}") from None


def check_architecture(architecture: str) -> None:
    """Raise ModelLoadError unless `architecture` names a registered network (no building)."""
    if architecture.startswith(TORCHVISION_PREFIX):
        name = architecture[len(TORCHVISION_PREFIX):]
        if name not in torchvision_names():
            raise ModelLoadError(f"unknown torchvision classification model '{name}'; see "
                                 f"torchvision.models.list_models()")
    elif architecture not in _BUILDERS:
        raise ModelLoadError(f"unknown architecture '{architecture}'; valid: "
                             f"{', '.join(ARCHITECTURES)}")


def build_model(architecture: str, num_classes: int,
                input_shape: tuple[int, int, int] | list[int]) -> nn.Module:
    """A freshly initialized network of a registered architecture (no preprocessing)."""
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or any(d <= 0 for d in shape):
        raise ModelLoadError(f"input_shape must be 3 positive integers [C, H, W], got "
                             f"{list(input_shape)}")
    if num_classes < 2:
        raise ModelLoadError(f"num_classes must be at least 2, got {num_classes}")
    if architecture.startswith(TORCHVISION_PREFIX):
        return _build_torchvision(architecture[len(TORCHVISION_PREFIX):], num_classes, shape)
    builder = _BUILDERS.get(architecture)
    if builder is None:
        raise ModelLoadError(f"unknown architecture '{architecture}'; valid: "
                             f"{', '.join(ARCHITECTURES)}")
    return builder(num_classes, shape)
