"""ε-sweep evaluation and the JSON report."""

from robustness.evaluation.sweep import AuditResult, Progress, run_sweep

__all__ = ["AuditResult", "Progress", "run_sweep"]
