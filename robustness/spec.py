"""The audit spec: one pydantic model for ``POST /v1/audits`` and ``robustness audit --spec``
(and the certification spec beside it, for ``robustness certify --spec``).

Validation lives here so that every entry point rejects the same inputs with the same message
naming the field.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, ClassVar, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from robustness.errors import SpecError

DATASET_NAMES = ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn", "imagefolder",
                 "digits", "tensors")

# Split sizes of the data sets whose size is fixed, so absurd `n` is rejected before any I/O.
SPLIT_SIZES = {
    ("mnist", "train"): 60000, ("mnist", "test"): 10000,
    ("fashion_mnist", "train"): 60000, ("fashion_mnist", "test"): 10000,
    ("cifar10", "train"): 50000, ("cifar10", "test"): 10000,
    ("cifar100", "train"): 50000, ("cifar100", "test"): 10000,
    ("svhn", "train"): 73257, ("svhn", "test"): 26032,
    ("digits", "train"): 1297, ("digits", "test"): 500,  # fixed split of sklearn's 1797
}


class Strict(BaseModel):
    """Unknown keys are errors: a typo in a spec must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid")


def _callback_url(v: str | None) -> str | None:
    if v is not None:
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(v)
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError as exc:
            raise ValueError(f"{v!r} is not a URL ({exc})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{v!r} is not an http(s) URL with a host")
    return v


CallbackUrl = Annotated[str | None, Field(
    max_length=2000, description="service only: where the job's final status is POSTed, "
    "signed (Standard Webhooks); kept out of the stored spec and the report"),
    AfterValidator(_callback_url)]


class ServiceJob(Strict):
    """What a spec carries for the service alone (the library ignores it)."""

    callback_url: CallbackUrl = None


class DatasetSpec(Strict):
    name: Literal["mnist", "fashion_mnist", "cifar10", "cifar100", "svhn", "imagefolder",
                  "digits", "tensors"]
    split: Literal["train", "test"] = "test"
    n: int | None = Field(default=None, gt=0, description="examples to take; all when absent")
    offset: int = Field(default=0, ge=0)
    seed: int | None = Field(default=None, description="sample n examples with this seed "
                             "instead of taking them in order from offset")
    path: str | None = Field(default=None, max_length=1024,
                             description="directory (imagefolder) or file "
                             "(tensors: .npz or .safetensors with x, y), relative to the data root")

    @model_validator(mode="after")
    def _check(self) -> DatasetSpec:
        if self.name in ("imagefolder", "tensors") and not self.path:
            raise ValueError(f"dataset.path: required for dataset '{self.name}'")
        if self.seed is not None and self.offset:
            # A seeded sample is drawn from the whole split; ignoring offset would be silent.
            raise ValueError("dataset.offset: cannot be combined with dataset.seed (a seeded "
                             "sample is drawn from the whole split)")
        size = SPLIT_SIZES.get((self.name, self.split))
        if size is not None:
            if self.offset >= size:
                raise ValueError(f"dataset.offset: {self.offset} is beyond the {self.split} "
                                 f"split of {self.name} ({size} examples)")
            if self.n is not None and self.offset + self.n > size:
                raise ValueError(f"dataset.n: {self.n} from offset {self.offset} exceeds the "
                                 f"{self.split} split of {self.name} ({size} examples)")
        return self


Epsilon = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class AttackBase(Strict):
    """An attack: its parameters, what it costs and how it runs. A new attack is one such
    class (in `ATTACK_SPECS` below) plus the module its `run` calls."""

    label: str | None = Field(default=None, max_length=100,
                              description="name of this attack in the report; "
                              "defaults to `name`, or `name_norm` when a name repeats")
    epsilons: list[Epsilon] | None = Field(default=None, max_length=64,
                                         description="this attack's ε grid, "
                                         "overriding the spec's (e.g. L2 radii)")
    batch_size: int | None = Field(default=None, gt=0, description="examples per attack "
                                   "call, to bound its memory (the audit's batch_size when "
                                   "unset; a larger value has no effect)")

    # The attack searches for the smallest perturbation, independent of ε: it runs once per
    # batch and returns (x_min, found); a bounded attack runs per ε and returns x_adv.
    minimum_norm: ClassVar[bool] = False
    # A bounded attack that attacks, at each ε, only the examples still robust at the
    # previous one (a cascade: first success ends an example's search).
    carries: ClassVar[bool] = False

    @model_validator(mode="after")
    def _check_epsilons(self):
        if self.epsilons is not None:
            _check_epsilon_grid(self.epsilons, self.norm, "epsilons")
        return self

    @property
    def passes_per_example(self) -> int:
        """Forward+backward passes per example: per ε of the grid for a bounded attack, per
        run for a minimum-norm one (the unit of the budget and the benchmarks)."""
        raise NotImplementedError

    def runs(self, grid: list[float]) -> int:
        """Attack runs per batch over this ε grid."""
        return 1 if self.minimum_norm else len(grid)

    def resolved(self, grid: list[float]) -> dict:
        """Every hyperparameter it runs with over `grid`, defaults included (provenance)."""
        return {**self.model_dump(), "epsilons": grid}

    def run(self, model, x, y, eps: float | None = None, *, generator=None,
            clean_logits=None):
        raise NotImplementedError

    def run_traced(self, model, x, y, eps: float | None = None, *, generator=None,
                   clean_logits=None):
        """`run` plus what the attack can tell per example; only a cascade tells anything
        (which of its stages broke each example)."""
        return self.run(model, x, y, eps, generator=generator, clean_logits=clean_logits)

    def doubled(self) -> AttackBase | None:
        """The same attack with twice the iterations (the convergence check), or None when
        it has no iterations to double. An unset step size follows its rule (PGD's halves)."""
        if "steps" not in type(self).model_fields:
            return None
        return self.model_copy(update={"steps": 2 * self.steps})

    def sweep(self, model, x, y, grid: list[float], *, generator=None, clean_logits=None):
        """Adversarial inputs at every ε of the ascending `grid` in one go, where the attack
        has a cheaper way than ε by ε (FGSM's one gradient, PGD's breaking-ε search); None:
        the sweep runs it at each ε. A cascade returns (inputs, stages): per ε, the stage a
        break of each example there counts for (whether it broke is the records' to say)."""
        return

    def run_batched(self, model, x, y, eps: float | None = None, *, generator=None,
                    clean_logits=None, traced: bool = False, **options):
        """`run` (or `run_traced`) in chunks of this attack's `batch_size` (all of x at once
        when unset); `options` go to `run`."""
        run = self.run_traced if traced else self.run
        size = self.batch_size or len(x)
        if size >= len(x):
            return run(model, x, y, eps, generator=generator, clean_logits=clean_logits,
                       **options)
        import torch

        parts = [run(model, x[i:i + size], y[i:i + size],
                     eps[i:i + size] if isinstance(eps, torch.Tensor) else eps,
                     generator=generator,
                     clean_logits=None if clean_logits is None else clean_logits[i:i + size],
                     **{k: v[i:i + size] if hasattr(v, "shape") else v
                        for k, v in options.items()})
                 for i in range(0, len(x), size)]
        if isinstance(parts[0], tuple):  # (x_min, found), (x_adv, stage): per column
            return tuple(torch.cat(columns) for columns in zip(*parts))
        return torch.cat(parts)


class GradientAttack(AttackBase):
    """An attack that follows the model's gradient, which EOT can average over a random
    model's draws."""

    eot: int = Field(default=1, ge=1, le=1000, description="expectation over "
                     "transformation: the gradient averaged over this many forward passes "
                     "(for models that are random at inference; 1: off)")

    def run_batched(self, model, x, y, eps=None, *, generator=None, clean_logits=None,
                    traced=False, **options):
        if self.eot > 1:
            from robustness.attacks import expectation

            model, clean_logits = expectation(model, self.eot), None
        return super().run_batched(model, x, y, eps, generator=generator,
                                   clean_logits=clean_logits, traced=traced, **options)


class FGSMSpec(GradientAttack):
    """Fast gradient sign method (L∞) or fast gradient method (L2): one step of size ε."""

    name: Literal["fgsm"]
    norm: Literal["linf", "l2"] = "linf"
    loss: Literal["ce", "margin"] = "ce"

    @property
    def passes_per_example(self) -> int:
        return self.eot

    def run(self, model, x, y, eps, *, generator=None, clean_logits=None):
        return self.sweep(model, x, y, [eps], clean_logits=clean_logits)[0]

    def sweep(self, model, x, y, grid, *, generator=None, clean_logits=None):
        import torch

        from robustness.attacks import expectation
        from robustness.attacks.fgsm import fgsm_grid

        if self.eot > 1:
            model, clean_logits = expectation(model, self.eot), None
        size = self.batch_size or len(x)
        parts = [fgsm_grid(model, x[i:i + size], y[i:i + size], self.norm, grid,
                           loss=self.loss, clean_logits=None if clean_logits is None
                           else clean_logits[i:i + size]) for i in range(0, len(x), size)]
        return [torch.cat(column) for column in zip(*parts)]


def _predicted(model, x):
    import torch

    with torch.no_grad():
        return model(x).argmax(1)


class PGDSpec(GradientAttack):
    """Projected gradient descent (Madry et al.), any norm, with random start and restarts."""

    name: Literal["pgd"]
    norm: Literal["linf", "l2"] = "linf"
    steps: int = Field(default=40, gt=0, le=10000)
    step_size: float | None = Field(default=None, gt=0, description="default 2.5·ε/steps")
    restarts: int = Field(default=1, gt=0, le=100)
    random_start: bool = True
    loss: Literal["ce", "margin"] = "ce"
    targets: int = Field(default=0, ge=0, le=999, description="0: untargeted; k: towards "
                         "the k classes the model ranks highest after the true one, in turn")
    search: bool = Field(default=True, description="find each example's breaking ε instead "
                         "of attacking it at every ε (robustness.evaluation.search); false: "
                         "a full attack at every ε")

    # Steps of ascent towards the class an adversarial is taken for, which push it on at
    # each ε from its breaking ε up (search only).
    refine_steps: ClassVar[int] = 3

    @property
    def passes_per_example(self) -> int:
        return self.steps * self.restarts * max(self.targets, 1) * self.eot

    def step_size_at(self, eps: float) -> float:
        """Madry et al.'s rule when unset: 2.5·ε/steps reaches the boundary from any start."""
        return self.step_size if self.step_size is not None else 2.5 * eps / self.steps

    def resolved(self, grid: list[float]) -> dict:
        return {**super().resolved(grid),
                "step_size": {str(e): self.step_size_at(e) for e in grid if e > 0},
                **({"refine_steps": self.refine_steps} if self.search else {})}

    def run(self, model, x, y, eps, *, generator=None, clean_logits=None,
            until_broken: bool = False, start=None, aim=None, steps: int | None = None):
        """`start` (a δ per row) replaces the random start, for one run of `steps`,
        untargeted or towards `aim` (the search's shrinking and refining runs)."""
        from robustness.attacks import pgd, threat_model

        if start is not None:
            return pgd(model, x, y, threat_model(self.norm, eps), start=start, aim=aim,
                       steps=steps or self.steps, step_size=self.step_size_at(eps),
                       loss=self.loss, clean_logits=clean_logits, until_broken=until_broken)
        return pgd(model, x, y, threat_model(self.norm, eps), steps=self.steps,
                   step_size=self.step_size_at(eps), restarts=self.restarts,
                   random_start=self.random_start, loss=self.loss, targets=self.targets,
                   generator=generator, clean_logits=clean_logits, until_broken=until_broken)

    def sweep(self, model, x, y, grid, *, generator=None, clean_logits=None):
        if not self.search or len(grid) < 2:
            return None

        from robustness.evaluation.search import breaking_search

        run, shrink, refine = self.search_runs(model, x, y, generator=generator,
                                               clean_logits=clean_logits)
        return breaking_search(model, x, y, grid, self.norm, clean_logits=clean_logits,
                               probe=lambda rows, eps: run(rows, eps, until_broken=True),
                               shrink=shrink, refine=refine)

    def search_runs(self, model, x, y, *, generator, clean_logits):
        """This PGD's runs for the breaking-ε search (robustness.evaluation.search), on rows
        of x at one ε per row: (run, shrink from δ = 0 to the first break, refine towards
        the class a point is taken for). A cascade's search uses the shrink and refine too."""
        import torch

        def run(rows, eps, **options):
            return self.run_batched(model, x[rows], y[rows], eps, generator=generator,
                                    clean_logits=clean_logits[rows], **options)

        def shrink(rows, eps):
            return run(rows, eps, until_broken=True, start=torch.zeros_like(x[rows]))

        def refine(rows, eps, x_start):
            return run(rows, eps, start=x_start - x[rows], aim=_predicted(model, x_start),
                       steps=min(self.refine_steps, self.steps))

        return run, shrink, refine


class APGDSpec(GradientAttack):
    """Auto-PGD (Croce & Hein): step-size-free PGD with momentum and step halving, on
    cross-entropy or the scale-invariant DLR loss; targeted at the top `targets` other
    classes in turn when `targets` > 0 (AutoAttack's APGD-T: loss dlr, targets 9)."""

    name: Literal["apgd"]
    norm: Literal["linf", "l2"] = "linf"
    loss: Literal["ce", "dlr"] = "ce"
    steps: int = Field(default=100, gt=0, le=10000)
    restarts: int = Field(default=1, gt=0, le=100)
    targets: int = Field(default=0, ge=0, le=999, description="0: untargeted; k: the k "
                         "classes the model ranks highest after the true one, one at a time")
    rho: float = Field(default=0.75, gt=0, lt=1, description="a step halves when the loss "
                       "rose in fewer than this fraction of the steps since the last check")

    @property
    def passes_per_example(self) -> int:
        return self.steps * self.restarts * max(self.targets, 1) * self.eot

    def run(self, model, x, y, eps, *, generator=None, clean_logits=None):
        from robustness.attacks import apgd, threat_model

        return apgd(model, x, y, threat_model(self.norm, eps), steps=self.steps,
                    loss=self.loss, restarts=self.restarts, targets=self.targets,
                    rho=self.rho, generator=generator, clean_logits=clean_logits)


class SquareSpec(AttackBase):
    """Square Attack (Andriushchenko et al.): score-based black-box random search, L∞ or L2;
    it needs no gradient, so gradient masking cannot hide a model from it."""

    name: Literal["square"]
    norm: Literal["linf", "l2"] = "linf"
    queries: int = Field(default=5000, gt=0, le=100000, description="forward passes per "
                         "example at most (AutoAttack's standard: 5000)")
    p_init: float = Field(default=0.8, gt=0, le=1, description="the first window's share "
                          "of the image; it halves on a schedule scaled to `queries`")

    @property
    def passes_per_example(self) -> int:
        return self.queries  # forward passes only: an upper bound in forward+backward units

    def doubled(self):
        return self.model_copy(update={"queries": 2 * self.queries})

    def run(self, model, x, y, eps, *, generator=None, clean_logits=None):
        from robustness.attacks import square, threat_model

        return square(model, x, y, threat_model(self.norm, eps), queries=self.queries,
                      p_init=self.p_init, generator=generator, clean_logits=clean_logits)


class FABSpec(GradientAttack):
    """FAB, targeted (Croce & Hein): minimum-norm, L∞ or L2, walking to the boundary with
    each of the model's `targets` runners-up in turn; broken at ε when the smallest
    adversarial it found is within ε (AutoAttack's FAB-T: targets 9, steps 100)."""

    name: Literal["fab"]
    norm: Literal["linf", "l2"] = "linf"
    steps: int = Field(default=100, gt=0, le=10000)
    targets: int = Field(default=9, ge=1, le=999, description="the k classes the model "
                         "ranks highest after the true one, one at a time")
    restarts: int = Field(default=1, gt=0, le=100)

    minimum_norm: ClassVar[bool] = True

    @property
    def passes_per_example(self) -> int:
        return self.steps * self.targets * self.restarts * self.eot

    def run(self, model, x, y, eps=None, *, generator=None, clean_logits=None):
        """With eps (inside a cascade), examples already broken within eps are left alone."""
        from robustness.attacks import fab

        return fab(model, x, y, self.norm, steps=self.steps, targets=self.targets,
                   restarts=self.restarts, eps=eps, generator=generator,
                   clean_logits=clean_logits)


class CWSpec(GradientAttack):
    """Carlini-Wagner L2: smallest perturbation found; broken at ε when its L2 norm ≤ ε."""

    name: Literal["cw"]
    norm: Literal["l2"] = "l2"
    steps: int = Field(default=100, gt=0, le=10000)
    binary_search_steps: int = Field(default=5, gt=0, le=50)
    initial_const: float = Field(default=1.0, gt=0)
    confidence: float = Field(default=0.0, ge=0, description="κ: required logit margin")
    lr: float = Field(default=0.05, gt=0, description="Adam step in tanh space; 0.05 reaches "
                      "100% success within the default 100 steps where 0.01 stalls on saturated pixels")
    adapt: float = Field(default=0.0, ge=0, le=1, description="an online binary search: "
                         "after each step, c ÷ (1 + adapt) where the point is adversarial, "
                         "× (1 + adapt) where not (0: c changes between binary-search steps "
                         "only); with 1 binary-search step, the fast setting of "
                         "docs/benchmarks.md")

    minimum_norm: ClassVar[bool] = True

    @property
    def passes_per_example(self) -> int:
        return self.steps * self.binary_search_steps * self.eot

    def run(self, model, x, y, eps=None, *, generator=None, clean_logits=None):
        from robustness.attacks import carlini_wagner_l2

        return carlini_wagner_l2(model, x, y, steps=self.steps,
                                 binary_search_steps=self.binary_search_steps,
                                 initial_const=self.initial_const,
                                 confidence=self.confidence, lr=self.lr, adapt=self.adapt)


class DeepFoolSpec(GradientAttack):
    """DeepFool (Moosavi-Dezfooli et al.): minimal L2 perturbation by local linearization."""

    name: Literal["deepfool"]
    norm: Literal["l2"] = "l2"
    steps: int = Field(default=50, gt=0, le=1000)
    overshoot: float = Field(default=0.02, ge=0)
    candidates: int = Field(default=10, ge=2, description="classes considered per step")

    minimum_norm: ClassVar[bool] = True

    @property
    def passes_per_example(self) -> int:
        return self.steps * self.candidates * self.eot  # one gradient per candidate class

    def run(self, model, x, y, eps=None, *, generator=None, clean_logits=None):
        from robustness.attacks import deepfool

        return deepfool(model, x, y, steps=self.steps, overshoot=self.overshoot,
                        candidates=self.candidates, clean_logits=clean_logits)


PRESETS = ("standard", "quick", "rand")


def _preset_stages(preset: str, norm: str) -> list[tuple[str, dict]]:
    """The stages of a preset, as (label, attack spec): AutoAttack's standard and rand
    versions (Croce & Hein 2020), and a quick one for pipelines that audit often."""
    if preset == "standard":
        return [("apgd-ce", {"name": "apgd", "loss": "ce", "norm": norm}),
                ("apgd-t", {"name": "apgd", "loss": "dlr", "targets": 9, "norm": norm}),
                ("fab-t", {"name": "fab", "targets": 9, "norm": norm}),
                ("square", {"name": "square", "queries": 5000, "norm": norm})]
    if preset == "quick":
        return [("apgd-ce", {"name": "apgd", "loss": "ce", "steps": 20, "norm": norm}),
                ("apgd-t", {"name": "apgd", "loss": "dlr", "targets": 3, "steps": 20,
                            "norm": norm})]
    return [("apgd-ce", {"name": "apgd", "loss": "ce", "eot": 20, "norm": norm}),
            ("apgd-dlr", {"name": "apgd", "loss": "dlr", "eot": 20, "norm": norm})]


class CascadeSpec(AttackBase):
    """A preset cascade (AutoAttack's way): each stage attacks only the examples every
    earlier stage left robust, and each example keeps its worst case. `standard`: APGD-CE,
    APGD-T (DLR, 9 targets), FAB-T (9 targets), Square (5000 queries); `quick`: APGD-CE and
    APGD-T (3 targets) at 20 steps; `rand`: APGD-CE and APGD-DLR with EOT over 20 draws, for
    models that are random at inference. An example broken at some ε is not attacked again
    at a larger one (the break carries)."""

    name: Literal["cascade"]
    preset: Literal["standard", "quick", "rand"] = "standard"
    norm: Literal["linf", "l2"] = "linf"
    eot: int | None = Field(default=None, ge=1, le=1000, description="EOT draws for every "
                            "gradient stage (rand: 20, others: 1, when unset)")
    scale: int = Field(default=1, ge=1, le=10, description="multiplies every gradient "
                       "stage's steps (the convergence check runs a sample at 2)")
    search: bool = Field(default=True, description="find each example's breaking ε from the "
                         "largest ε down (robustness.evaluation.search): an example the "
                         "cascade leaves robust at an ε is not attacked at a smaller one; "
                         "false: the cascade at every ε on the examples still robust")

    carries: ClassVar[bool] = True

    def stages(self) -> list[tuple[str, AttackBase]]:
        out = []
        for label, raw in _preset_stages(self.preset, self.norm):
            kind = _STAGE_TYPES[raw["name"]]
            if raw["name"] != "square":  # Square's queries are its budget, not iterations
                raw = {**raw, "steps": raw.get("steps", kind.model_fields["steps"].default)
                       * self.scale}
                if self.eot is not None:
                    raw["eot"] = self.eot
            if self.batch_size is not None:
                raw["batch_size"] = self.batch_size
            out.append((label, kind.model_validate(raw)))
        return out

    @property
    def passes_per_example(self) -> int:
        return sum(stage.passes_per_example for _, stage in self.stages())

    def doubled(self):
        return self.model_copy(update={"scale": 2 * self.scale})

    def resolved(self, grid):
        return {**super().resolved(grid),
                "stages": [{**stage.resolved(grid), "label": label}
                           for label, stage in self.stages()]}

    def run(self, model, x, y, eps, *, generator=None, clean_logits=None):
        return self.run_traced(model, x, y, eps, generator=generator,
                               clean_logits=clean_logits)[0]

    def sweep(self, model, x, y, grid, *, generator=None, clean_logits=None):
        """(adversarial inputs, stage a break counts for) at each ε, by the breaking-ε search: the
        cascade runs at the largest ε on every example and, below it, only where a break is
        still open (grouped by ε, as its stages take one ε each); a PGD run from δ = 0 that
        stops at the first break shrinks each break found, so few examples need the cascade
        at a second ε. Not for `rand` (or any EOT): a random model's breaks do not carry
        between balls."""
        random_model = self.preset == "rand" or (self.eot or 1) > 1
        if not self.search or random_model or sum(e > 0 for e in grid) < 2:
            return None
        import torch

        from robustness.attacks import threat_model
        from robustness.evaluation.search import breaking_search

        stage_of = torch.full((len(x),), -1, dtype=torch.long, device=x.device)
        probe_x = x.clone()  # per example, the last adversarial a cascade run found

        def probe(rows, eps):
            x_adv = x[rows].clone()
            for value in eps.unique():
                at = eps == value
                sub = rows[at]
                x_adv[at], stage = self.run_batched(
                    model, x[sub], y[sub], float(value), generator=generator,
                    clean_logits=clean_logits[sub], traced=True)
                broke = stage >= 0  # the latest break found is the one at the smallest ε
                stage_of[sub[broke]], probe_x[sub[broke]] = stage[broke], x_adv[at][broke]
            return x_adv

        first = self.stages()[0][1]  # a gradient stage in every preset
        shrinker = PGDSpec(name="pgd", norm=self.norm, steps=min(40 * self.scale, first.steps),
                           batch_size=self.batch_size)
        _, shrink, refine = shrinker.search_runs(model, x, y, generator=generator,
                                                 clean_logits=clean_logits)

        swept = breaking_search(model, x, y, grid, self.norm, clean_logits=clean_logits,
                                probe=probe, shrink=shrink, refine=refine, shrink_first=True)
        stages = []
        for eps in grid:
            # A break at ε counts for the stage whose adversarial, projected into this ball,
            # still breaks; one only the shrinking PGD found, for the first (gradient) stage.
            # Which examples are broken there is for the records to say (the sweep's).
            stage = torch.zeros_like(stage_of)
            if eps > 0 and bool((stage_of >= 0).any()):
                with torch.no_grad():
                    inside = x + threat_model(self.norm, eps).clip(x, probe_x - x)
                    by_stage = (model(inside).argmax(1) != y) & (stage_of >= 0)
                stage = torch.where(by_stage, stage_of, stage)
            stages.append(stage)
        return swept, stages

    def run_traced(self, model, x, y, eps, *, generator=None, clean_logits=None):
        """(adversarial inputs, index of the stage that broke each example or -1)."""
        from robustness.attacks.cascade import cascade

        def bounded(stage):
            if not stage.minimum_norm:
                return lambda m, xs, ys, e, g, cl: stage.run_batched(
                    m, xs, ys, e, generator=g, clean_logits=cl)

            def thresholded(m, xs, ys, e, g, cl):
                import torch

                from robustness.attacks import threat_model

                x_min, found = stage.run_batched(m, xs, ys, e, generator=g, clean_logits=cl)
                within = found & (threat_model(self.norm, e).size(x_min - xs) <= e)
                return torch.where(within.view(-1, *([1] * (xs.dim() - 1))), x_min, xs)
            return thresholded

        return cascade(model, x, y, eps, [bounded(stage) for _, stage in self.stages()],
                       generator=generator, clean_logits=clean_logits)


ATTACK_SPECS = (FGSMSpec, PGDSpec, APGDSpec, SquareSpec, FABSpec, CWSpec, DeepFoolSpec,
                CascadeSpec)
_STAGE_TYPES = {"apgd": APGDSpec, "fab": FABSpec, "square": SquareSpec}
AttackSpec = Annotated[Union[ATTACK_SPECS], Field(discriminator="name")]  # noqa: UP007
ATTACK_NAMES = tuple(cls.model_fields["name"].annotation.__args__[0] for cls in ATTACK_SPECS)
_UNION_TAG = re.compile(rf"\.({'|'.join(ATTACK_NAMES)})(?=\.|$)")


class GateRule(Strict):
    """One pass/fail condition on the report, for pipelines that block a release on it."""

    metric: Literal["accuracy", "top5_accuracy", "attack_success_rate",
                    "mean_confidence_on_errors", "silent_error_rate", "checks"]
    attack: str | None = Field(default=None, max_length=100,
                               description="attack label (or name) in this "
                               "spec, or 'clean'; not for metric 'checks'")
    epsilon: float | None = None
    tau: float | None = Field(default=None, gt=0, le=1,
                              description="confidence threshold, for silent_error_rate")
    op: Literal[">=", ">", "<=", "<", "=="]
    value: float | Literal["pass", "warn", "fail"] | None = Field(
        default=None, description="a number; for metric 'checks', the worst status allowed, "
        "compared in the order pass < warn < fail; not with `baseline`")
    baseline: str | None = Field(default=None, max_length=1000, description="instead of "
                                 "`value`: an audit id (service) or a report file (CLI) whose "
                                 "figure for the same metric, attack and ε is the bound, "
                                 "give or take `tolerance`")
    tolerance: float = Field(default=0.0, ge=0, le=1, description="with `baseline`: how far "
                             "past the baseline's figure still passes (>=: down to "
                             "baseline - tolerance; <=: up to baseline + tolerance)")
    baseline_value: float | None = Field(default=None, description="the baseline's figure, "
                                         "filled in when the job is submitted")

    @model_validator(mode="after")
    def _check(self) -> GateRule:
        if self.baseline is not None:
            if self.value is not None:
                raise ValueError("value: give a value or a baseline, not both")
            if self.metric == "checks":
                raise ValueError("baseline: metric 'checks' takes a status value")
        elif self.value is None:
            raise ValueError("value: required (or a baseline audit to compare with)")
        elif (self.metric == "checks") != isinstance(self.value, str):
            raise ValueError("value: metric 'checks' takes 'pass', 'warn' or 'fail' (the "
                             "validity checks' worst status); every other metric a number")
        if self.metric == "checks" and self.attack is not None:
            raise ValueError("attack: metric 'checks' is over the whole report, not one attack")
        if self.metric != "checks" and self.attack is None:
            raise ValueError("attack: required (an attack label or name, or 'clean')")
        return self


class AuditSpec(ServiceJob):
    model_id: str | None = Field(default=None, max_length=100,
                                description="registered model (service only)")
    dataset: DatasetSpec
    preset: Literal["standard", "quick", "rand"] | None = Field(
        default=None, description="a preset cascade instead of `attacks` (its ε grid is "
        "`epsilons`, L∞); a spec with neither runs `standard`")
    attacks: list[AttackSpec] = Field(default=None, min_length=1, max_length=32,
                                      description="the attacks; absent: the preset")
    epsilons: list[Epsilon] = Field(default=[0.0, 0.1, 0.2, 0.3], min_length=1, max_length=64)
    top_k: int = Field(default=5, gt=0, le=100)
    seed: int = 0
    taus: list[float] = Field(default=[0.5, 0.9], min_length=1, max_length=32,
                              description="confidence thresholds of the silent-error rate")
    batch_size: int | None = Field(
        default=None, gt=0, le=65536, description="examples per batch, each with its own "
        "random seed; unset: the largest that fits the free memory, up to 256 on a CPU and "
        "4096 on a GPU (robustness.batching), written back into the report's spec")
    precision: Literal["fp32", "amp"] = Field(
        default="fp32", description="amp: the attacks' passes run under automatic mixed "
        "precision (bfloat16; float16 on GPUs without it); every reported figure is still "
        "the float32 model's prediction on the points they found")
    gate: list[GateRule] | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _check(self) -> AuditSpec:
        if self.preset is not None and self.attacks is not None:
            raise ValueError("preset: cannot be combined with attacks (a preset is its own "
                             "list of attacks; add a {'name': 'cascade', 'preset': ...} "
                             "attack to mix them)")
        if self.attacks is None:
            # Stored as the one cascade it stands for, so the spec re-parses to the same audit.
            preset = self.preset or "standard"
            self.attacks = [CascadeSpec(name="cascade", preset=preset, label=preset)]
            self.preset = None
        for tau in self.taus:
            if not 0 < tau <= 1:
                raise ValueError(f"taus: {tau} is not a confidence in (0, 1]")
        for i, attack in enumerate(self.attacks):
            if attack.epsilons is None:
                _check_epsilon_grid(self.epsilons, attack.norm,
                                    f"epsilons (used by attacks[{i}], {attack.name})")
        labels = self.attack_labels()
        if len(set(labels)) != len(labels):
            raise ValueError(f"attacks: labels {labels} repeat; give each attack a 'label'")
        for i, rule in enumerate(self.gate or []):
            self._check_gate_rule(i, rule, labels)
        return self

    def attack_labels(self) -> list[str]:
        names = [a.name for a in self.attacks]
        return [a.label or (a.name if names.count(a.name) == 1 else f"{a.name}_{a.norm}")
                for a in self.attacks]

    def grid(self, attack: AttackBase) -> list[float]:
        """The sorted ε grid of one attack (ascending, so a break found at ε carries upward)."""
        return sorted(set(attack.epsilons if attack.epsilons is not None else self.epsilons))

    def _check_gate_rule(self, i: int, rule: GateRule, labels: list[str]) -> None:
        where = f"gate[{i}]"
        if rule.metric == "silent_error_rate" and rule.tau not in self.taus:
            raise ValueError(f"{where}.tau must be one of taus {self.taus}")
        if rule.attack == "clean" or rule.metric == "checks":
            return
        matches = [a for a, lab in zip(self.attacks, labels) if rule.attack in (lab, a.name)]
        if len(matches) != 1:
            raise ValueError(f"{where}.attack '{rule.attack}' must name exactly one attack of "
                             f"{labels} or 'clean'")
        if rule.epsilon is None or rule.epsilon not in self.grid(matches[0]):
            raise ValueError(f"{where}.epsilon {rule.epsilon} is not in the ε grid "
                             f"{self.grid(matches[0])} of '{rule.attack}'")


class SmoothedAttackSpec(Strict):
    """The empirical side of a certification: SmoothAdv's PGD-L2 on the smoothed classifier
    at each radius; its robust accuracy can only be at or above the certified one."""

    radii: list[Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]] | None = Field(
        default=None, max_length=16, description="default: the positive radii of `radii`")
    steps: int = Field(default=20, gt=0, le=1000)
    draws: int = Field(default=16, gt=0, le=1024, description="noise draws per gradient")
    n: int = Field(default=1000, gt=0, le=1_000_000, description="draws for the smoothed "
                   "prediction at each attacked point")
    batch_size: int = Field(default=64, gt=0, le=4096, description="examples per attack call")


class CertifySpec(ServiceJob):
    """Randomized-smoothing certification (`robustness.smoothing`): Cohen et al.'s CERTIFY on
    each example of `dataset`."""

    model_id: str | None = Field(default=None, max_length=100,
                                 description="registered model (service only)")
    dataset: DatasetSpec
    sigma: float = Field(gt=0, le=10, allow_inf_nan=False,
                         description="noise standard deviation, in input units ([0, 1])")
    n0: int = Field(default=100, ge=1, le=100_000, description="selection samples")
    n: int = Field(default=100_000, ge=1, le=10_000_000, description="estimation samples")
    alpha: float = Field(default=0.001, gt=0, lt=0.5, allow_inf_nan=False,
                         description="a certificate is wrong with probability at most alpha")
    radii: list[Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]] = Field(
        default=[0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0], min_length=1, max_length=64,
        description="L2 radii of the certified-accuracy table")
    batch_size: int | None = Field(default=None, gt=0, le=65536, description="noisy copies "
                                   "per forward pass; default: as many as 16 MiB of input holds")
    top_k: int = Field(default=3, gt=0, le=100)
    seed: int = Field(default=0, ge=0)
    attack: SmoothedAttackSpec | None = Field(default_factory=SmoothedAttackSpec,
                                              description="null: certificates only")

    @model_validator(mode="after")
    def _check(self) -> CertifySpec:
        self.radii = sorted(set(self.radii))
        if self.attack is not None:
            if self.attack.radii is None:
                self.attack.radii = [r for r in self.radii if r > 0]
            self.attack.radii = sorted(set(self.attack.radii))
        return self

    def forward_passes_per_example(self) -> int:
        """n0 + n, plus the attack's: a forward and a backward pass per draw and step, and n
        draws for the prediction at each attacked point, per radius."""
        a = self.attack
        attack = 0 if a is None else len(a.radii) * (2 * a.steps * a.draws + a.n)
        return self.n0 + self.n + attack


def parse_certify_spec(data: dict | str | bytes) -> CertifySpec:
    return parse_spec(CertifySpec, data)


def _check_epsilon_grid(epsilons: list[float], norm: str, where: str) -> None:
    if not epsilons:
        raise ValueError(f"{where}: the ε grid is empty")
    for eps in epsilons:
        if not math.isfinite(eps) or eps < 0:
            raise ValueError(f"{where}: ε={eps} must be a finite number ≥ 0")
        if norm == "linf" and eps > 1:
            raise ValueError(f"{where}: L∞ ε={eps} exceeds the input range [0, 1]")
    repeated = sorted({eps for eps in epsilons if epsilons.count(eps) > 1})
    if repeated:
        raise ValueError(f"{where}: ε={repeated[0]!r} is given more than once")


def parse_spec(model: type[BaseModel], data: dict | str | bytes):
    """Validate a spec, turning pydantic's report into one SpecError naming each bad field."""
    try:
        if isinstance(data, (str, bytes)):
            return model.model_validate_json(data)
        return model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc)) from None


def parse_audit_spec(data: dict | str | bytes) -> AuditSpec:
    return parse_spec(AuditSpec, data)


def format_validation_error(exc: ValidationError) -> str:
    return format_errors(exc.errors(include_url=False))


def error_location(err: dict, skip: tuple[str, ...] = ()) -> str:
    """Where a pydantic error is, as a user writes it (`attacks[0].steps`); `skip` drops
    leading location parts such as FastAPI's 'body'."""
    loc = list(err["loc"])
    while loc and loc[0] in skip:
        loc.pop(0)
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    # Union members add their tag to the location (attacks[0].pgd.steps); drop it.
    return _UNION_TAG.sub("", text)


def error_message(err: dict) -> str:
    return err["msg"].removeprefix("Value error, ")


def format_errors(errors, skip: tuple[str, ...] = ()) -> str:
    """Pydantic's error list as one line naming each bad field (`attacks[0].steps: ...`)."""
    parts = []
    for err in errors:
        loc, msg = error_location(err, skip), error_message(err)
        parts.append(f"{loc}: {msg}" if loc and not msg.startswith(loc) else msg)
    return "; ".join(parts)
