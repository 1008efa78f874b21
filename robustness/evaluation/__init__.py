"""ε-sweep evaluation and the JSON report."""

from robustness.evaluation.sweep import AuditResult, run_audit

__all__ = ["AuditResult", "run_audit"]
