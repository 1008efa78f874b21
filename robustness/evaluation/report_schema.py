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


class Check(Open):
    """One validity check (docs/report.md): whether the report's own figures can be trusted."""

    id: str
    status: Literal["pass", "warn", "fail"]
    detail: str
    figures: dict[str, Any] = Field(default_factory=dict)


class GateOutcome(Open):
    passed: bool
    failed: list[dict[str, Any]]


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
