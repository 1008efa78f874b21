"""The training spec: one pydantic model for ``POST /v1/trainings`` and ``robustness train``.

Method-specific keys (`steps`, `beta`, `temperature`, ...) sit flat beside `method`, as the v1
contract shows; a key the chosen method does not use is an error rather than silently ignored,
because a TRADES `beta` sent with `method: pgd` means the user believes they asked for
something they did not get.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from robustness.models.metadata import Preprocessing
from robustness.spec import DatasetSpec, ServiceJob, Strict, parse_spec

METHODS = ("standard", "fgsm", "pgd", "trades", "distillation", "gaussian")

# Which optional keys each method reads; every other method must leave them unset.
METHOD_KEYS = {
    "step_size": ("fgsm", "pgd", "trades"),
    "steps": ("pgd", "trades"),
    "random_start": ("fgsm", "pgd"),
    "epsilon_warmup": ("fgsm", "pgd", "trades"),
    "beta": ("trades",),
    "temperature": ("distillation",),
    "teacher_model_id": ("distillation",),
    "teacher_epochs": ("distillation",),
    "sigma": ("gaussian",),
}
ADVERSARIAL = ("fgsm", "pgd", "trades")


class TrainingDatasetSpec(DatasetSpec):
    split: Literal["train", "test"] = "train"


class ValidationSpec(Strict):
    """The held-out slice watched every epoch (clean, FGSM and PGD accuracy).

    It is the last `n` examples of the training selection, removed from training, so model
    selection never looks at the test split.
    """

    n: int = Field(default=1000, ge=0, le=100000, description="held-out examples; 0 disables "
                   "the monitors (the last epoch is kept)")
    epsilon: float | None = Field(default=None, ge=0, allow_inf_nan=False,
                                  description="ε of the robust monitors; default the training ε")
    steps: int = Field(default=10, gt=0, le=1000, description="PGD steps of the robust monitor")
    restarts: int = Field(default=1, gt=0, le=20)
    batch_size: int = Field(default=500, gt=0, le=65536)
    collapse_drop: float = Field(default=0.5, gt=0, le=1, description="catastrophic "
                                 "overfitting: PGD accuracy fell by this fraction of its best")
    collapse_gap: float = Field(default=0.2, gt=0, le=1, description="... while FGSM accuracy "
                                "stays at least this far above PGD accuracy (or falls with it)")
    masking_gap: float = Field(default=0.5, gt=0, le=1, description="catastrophic "
                               "overfitting from the start: FGSM accuracy above PGD accuracy by "
                               "at least this much two epochs running, while PGD accuracy does not rise")


class TrainingSpec(ServiceJob):
    name: str | None = Field(default=None, max_length=200, description="name in the model card")
    architecture: str = Field(max_length=200, description="registry name, e.g. madry_mnist, wong_mnist, "
                              "preact_resnet18, torchvision:resnet18")
    num_classes: int | None = Field(default=None, ge=2, description="default: from the data")
    input_shape: list[int] | None = Field(default=None, max_length=4,
                                          description="default: from the data")
    preprocessing: Preprocessing | None = None
    dataset: TrainingDatasetSpec
    method: Literal["standard", "fgsm", "pgd", "trades", "distillation", "gaussian"]
    norm: Literal["linf", "l2"] = "linf"
    epsilon: float | None = Field(default=None, ge=0, allow_inf_nan=False,
                                  description="perturbation budget, pixel units of [0,1] inputs")
    step_size: float | None = Field(default=None, gt=0, allow_inf_nan=False,
                                    description="fgsm: 1.25·ε; pgd/trades: 2.5·ε/steps")
    steps: int | None = Field(default=None, gt=0, le=1000, description="pgd/trades: default 10")
    random_start: bool | None = Field(default=None, description="fgsm/pgd: default true")
    epsilon_warmup: float | None = Field(
        default=None, ge=0, le=1000, allow_inf_nan=False,
        description="fgsm/pgd/trades: epochs over which the training ε (and step) ramps up "
        "linearly from 0; default 0. PGD-AT of a small MNIST network at ε=0.3 from scratch "
        "can stay at chance accuracy without it")
    beta: float | None = Field(default=None, gt=0, allow_inf_nan=False,
                               description="trades: weight of the robustness term, default 6")
    temperature: float | None = Field(default=None, ge=1, le=1000, allow_inf_nan=False,
                                      description="distillation: default 100")
    teacher_model_id: str | None = Field(default=None, max_length=100, description="distillation: a registered "
                                         "teacher (service); default: train one in this job")
    teacher_epochs: int | None = Field(default=None, gt=0, le=1000,
                                       description="distillation: default `epochs`")
    sigma: float | None = Field(default=None, gt=0, le=10, allow_inf_nan=False,
                                description="gaussian: the noise's standard deviation (train "
                                "at the σ the model will be certified at)")
    epochs: int = Field(gt=0, le=1000)
    batch_size: int = Field(default=128, gt=0, le=65536)
    lr: float = Field(default=1e-3, gt=0, le=10, allow_inf_nan=False,
                      description="peak learning rate")
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    lr_schedule: Literal["constant", "cosine", "cyclic"] | None = Field(
        default=None, description="default cyclic for fgsm (Wong et al.), cosine otherwise")
    seed: int = 0
    validation: ValidationSpec = ValidationSpec()
    checkpoint: Literal["best", "last"] = Field(default="best", description="best: the epoch "
                                                "with the highest PGD validation accuracy "
                                                "(clean accuracy for standard, distillation)")
    on_catastrophic_overfitting: Literal["stop", "continue"] = "stop"

    @model_validator(mode="after")
    def _check(self) -> TrainingSpec:
        for key, methods in METHOD_KEYS.items():
            if getattr(self, key) is not None and self.method not in methods:
                users = " or ".join(f"'{m}'" for m in methods)
                raise ValueError(f"{key}: only used by method {users}, not '{self.method}'")
        if self.method == "gaussian" and self.sigma is None:
            raise ValueError("sigma: required by method 'gaussian'")
        if self.method in ADVERSARIAL and self.epsilon is None:
            raise ValueError(f"epsilon: required by method '{self.method}'")
        for where, eps in (("epsilon", self.epsilon), ("validation.epsilon",
                                                       self.validation.epsilon)):
            if eps is not None and self.norm == "linf" and eps > 1:
                raise ValueError(f"{where}: L∞ ε={eps} exceeds the input range [0, 1]")
        if self.method in ADVERSARIAL and self.epsilon == 0:
            raise ValueError(f"epsilon: method '{self.method}' needs ε > 0 (use method "
                             f"'standard' for ε = 0)")
        if self.input_shape is not None and (len(self.input_shape) != 3
                                             or any(d <= 0 for d in self.input_shape)):
            raise ValueError(f"input_shape: must be 3 positive integers [C, H, W], got "
                             f"{self.input_shape}")
        n = self.dataset.n
        if n is not None and self.validation.n >= n:
            raise ValueError(f"validation.n: {self.validation.n} held-out examples leave none "
                             f"of dataset.n={n} to train on")
        if self.teacher_model_id is not None and self.teacher_epochs is not None:
            raise ValueError("teacher_epochs: only used when the teacher is trained in this job "
                             "(no teacher_model_id)")
        if self.optimizer == "adam" and "momentum" in self.model_fields_set:
            raise ValueError("momentum: only used by optimizer 'sgd'")
        return self

    # Resolved hyperparameters: the defaults each method documents.
    @property
    def schedule(self) -> str:
        return self.lr_schedule or ("cyclic" if self.method == "fgsm" else "cosine")

    @property
    def attack_steps(self) -> int:
        return 1 if self.method == "fgsm" else (self.steps or 10)

    @property
    def attack_step_size(self) -> float:
        if self.step_size is not None:
            return self.step_size
        eps = self.epsilon or 0.0
        return 1.25 * eps if self.method == "fgsm" else 2.5 * eps / self.attack_steps

    @property
    def monitor_epsilon(self) -> float | None:
        return self.validation.epsilon if self.validation.epsilon is not None else self.epsilon

    def resolved(self) -> dict:
        """The spec with every default a method applies filled in, for the model card."""
        out = self.model_dump(exclude_none=True)
        out["lr_schedule"] = self.schedule
        if self.method in ADVERSARIAL:
            out["step_size"] = self.attack_step_size
            if self.method != "fgsm":
                out["steps"] = self.attack_steps
        if self.method in ADVERSARIAL:
            out["epsilon_warmup"] = self.epsilon_warmup or 0.0
        if self.method in ("fgsm", "pgd"):
            out["random_start"] = self.random_start is not False
        if self.method == "trades":
            out["beta"] = self.beta or 6.0
        if self.method == "distillation":
            out["temperature"] = self.temperature or 100.0
            if self.teacher_model_id is None:
                out["teacher_epochs"] = self.teacher_epochs or self.epochs
        return out


def parse_training_spec(data: dict | str | bytes) -> TrainingSpec:
    return parse_spec(TrainingSpec, data)
