"""The report's schema, versioned: `Report` describes what `build_report` writes (the v1
report of shared/DESIGN.md), so the HTTP contract, generated clients and readers of stored
reports all see one definition. `schema_version` changes only when a key changes meaning or
goes away; new keys are added freely, and every model passes unknown keys through.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Figures(Open):
    """Aggregate figures of the clean inputs or of one (attack, ε)."""

    accuracy: float | None
    top5_accuracy: float | None
    mean_confidence: float | None
    mean_confidence_on_errors: float | None = Field(
        description="mean confidence of the misclassified examples")
    mean_true_class_prob: float | None
    silent_error_rate: dict[str, float | None] = Field(
        description="per τ: the fraction misclassified with confidence ≥ τ")
    errors: int


class StageFigure(Open):
    label: str = Field(description="the stage (apgd-ce, apgd-t, fab-t, square, ...)")
    accuracy: float = Field(description="robust accuracy once this stage and every earlier "
                            "one have run")
    broken: int = Field(description="examples this stage broke (none before it had)")


class Result(Figures):
    attack: str = Field(description="the attack's name (fgsm, pgd, ...)")
    label: str = Field(description="the attack's label in this report (its name unless "
                       "two attacks share one)")
    norm: str
    epsilon: float
    attack_success_rate: float | None
    mean_linf_on_success: float | None
    mean_l2_on_success: float | None
    stages: list[StageFigure] | None = Field(default=None, description="a cascade's robust "
                                             "accuracy after each of its stages, in order")


class WorstCase(Open):
    norm: str
    epsilon: float
    attacks: list[str]
    accuracy: float


class MinimalPerturbation(Open):
    attack: str
    label: str
    norm: str
    success_rate: float | None
    mean_norm: float | None
    median_norm: float | None


class CleanColumns(Open):
    pred: list[int]
    confidence: list[float]
    true_class_prob: list[float]
    topk: list[list[int]]
    topk_confidence: list[list[float]]


class AdversarialColumns(CleanColumns):
    attack: str
    label: str
    norm: str
    epsilon: float
    linf: list[float]
    l2: list[float]


class Examples(Open):
    """Per-example columns, aligned with `index`."""

    index: list[int]
    label: list[int] = Field(description="each example's true class")
    clean: CleanColumns
    adversarial: list[AdversarialColumns]
    broken_at: dict[str, list[float | None]] = Field(
        description="per attack label: the smallest ε of its grid that broke the example")
    min_broken_epsilon: dict[str, list[float | None]] = Field(
        description="per norm: the smallest ε any attack broke the example at")
    minimal_norm: dict[str, list[float | None]] = Field(
        description="per minimum-norm attack label: the size of the smallest adversarial "
                    "found (null: none found)")


class Provenance(Open):
    versions: dict[str, str | None]
    platform: str
    device: str
    threads: int
    seed: int
    attacks: list[dict[str, Any]] = Field(description="every attack's resolved "
                                          "hyperparameters, defaults included")
    seconds: float
    attack_seconds: dict[str, float]
    finished_at: str
    memory: dict[str, int | None] | None = Field(
        default=None, description="the audit's peak memory: the process's resident set at the "
        "start, its peak (sampled) and at the end, and CUDA's peak of allocated bytes (null "
        "on the CPU); null figures where the OS does not tell")
    batch_size: dict[str, Any] | None = Field(
        default=None, description="how the spec's batch_size was chosen: `value`, `chosen` "
        "(spec, or free memory when the spec left it unset) and, when chosen, the measured "
        "`per_example_bytes`, the `free_bytes` it had to fit in and the device's `cap`")


class Check(Open):
    """One validity check (docs/report.md): whether the report's own figures can be trusted."""

    id: str
    status: Literal["pass", "warn", "fail"]
    detail: str
    figures: dict[str, Any] = Field(default_factory=dict)


class GateOutcome(Open):
    passed: bool
    failed: list[dict[str, Any]]


class ClassFigures(Open):
    model_config = ConfigDict(extra="allow", serialize_by_alias=True, validate_by_name=True)

    class_: int = Field(alias="class")
    name: str | None = Field(default=None, description="from the model's metadata labels")
    n: int
    clean_accuracy: float
    robust: list[dict[str, Any]] = Field(description="{attack, epsilon, accuracy} per column")


class Confusion(Open):
    attack: str
    epsilon: float
    errors: list[list[int]] = Field(description="[true class, predicted class, count], the "
                                    "misclassifications under this attack and ε")


class PerClass(Open):
    classes: list[ClassFigures]
    confusion: list[Confusion]


class Report(Open):
    """An audit report (`robustness audit --out`, `GET /v1/audits/{id}/report`)."""

    schema_version: Literal[SCHEMA_VERSION] = SCHEMA_VERSION
    model: dict[str, Any]
    dataset: dict[str, Any]
    spec: dict[str, Any]
    clean: Figures
    results: list[Result]
    worst_case: list[WorstCase]
    minimal_perturbation: list[MinimalPerturbation]
    examples: Examples
    provenance: Provenance
    checks: list[Check] = Field(default_factory=list, description="validity checks; a "
                                "report from before they existed has none")
    gate: GateOutcome | None = None
    per_class: PerClass | None = Field(default=None, description="by true class; a report "
                                       "from before it existed has none")


# --- certification reports (robustness.certification) -------------------------------------

class RadiusFigure(Open):
    radius: float = Field(description="L2 radius, input units ([0, 1] pixels)")
    accuracy: float = Field(description="fraction of examples classified correctly with a "
                            "certified radius of at least `radius`")


class AttackedFigure(Open):
    radius: float
    accuracy: float = Field(description="smoothed classifier's accuracy on the attack's points")
    certified_accuracy: float = Field(description="the certified accuracy at this radius, "
                                      "which the attacked accuracy never falls below")


class SmoothedAttack(Open):
    name: str
    norm: str
    steps: int
    draws: int
    n: int
    results: list[AttackedFigure]


class PerClassCertified(Open):
    class_: int = Field(alias="class")
    n: int
    abstention_rate: float
    certified_accuracy: list[RadiusFigure]


class CertifiedExamples(Open):
    """Per example, in columns (the i-th entry of each list is one example)."""

    index: list[int]
    label: list[int]
    pred: list[int] = Field(description="the smoothed classifier's class; -1 where it abstained")
    abstain: list[bool]
    radius: list[float] = Field(description="certified L2 radius (0 where it abstained)")
    p_lower: list[float] = Field(description="lower confidence bound on the top class's "
                                 "probability under noise")
    count: list[int]
    top_classes: list[list[int]]
    top_counts: list[list[int]]
    attack_pred: list[list[int]] | None = Field(
        default=None, description="per attack radius: the smoothed class at each attacked point")


class CertificationReport(Open):
    kind: Literal["certification"]
    model: dict[str, Any]
    dataset: dict[str, Any]
    spec: dict[str, Any]
    certified_accuracy: list[RadiusFigure]
    clean_accuracy: float = Field(description="the smoothed classifier's accuracy (CERTIFY's "
                                  "prediction, abstentions counted wrong)")
    abstention_rate: float
    per_class: list[PerClassCertified]
    examples: CertifiedExamples
    attack: SmoothedAttack | None = None
    cost: dict[str, Any] = Field(description="forward passes (n0 + n per example, plus the "
                                 "attack's), batch size and seconds")
    provenance: dict[str, Any]
