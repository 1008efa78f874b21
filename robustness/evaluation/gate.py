"""Pass/fail rules over a finished report, so a pipeline can block a release on robustness."""

from __future__ import annotations

import operator

OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt,
       "==": operator.eq}


STATUSES = ("pass", "warn", "fail")  # the checks' statuses, best first


def worst_check(report: dict) -> str:
    """The worst status among the report's validity checks ('pass' when there are none)."""
    return max((c["status"] for c in report.get("checks", [])), key=STATUSES.index,
               default="pass")


def _metric(rule, report: dict):
    if rule.metric == "checks":
        return worst_check(report)
    if rule.attack == "clean":
        row = report["clean"]
    else:
        row = next(r for r in report["results"]
                   if rule.attack in (r["label"], r["attack"]) and r["epsilon"] == rule.epsilon)
    value = row.get(rule.metric)
    if rule.metric == "silent_error_rate":
        value = value[str(rule.tau)]
    return value


def evaluate_gate(rules, report: dict) -> dict:
    failed = []
    for rule in rules:
        value = _metric(rule, report)
        if rule.metric == "checks":  # compare statuses by severity
            value, limit = STATUSES.index(value), STATUSES.index(rule.value)
            if not OPS[rule.op](value, limit):
                failed.append({**rule.model_dump(mode="json"), "actual": STATUSES[value]})
            continue
        # A metric with no value (e.g. confidence on errors when there are none) passes only
        # rules that bound it from above: there is nothing to exceed.
        ok = OPS[rule.op](value, rule.value) if value is not None else rule.op in ("<=", "<")
        if not ok:
            failed.append({**rule.model_dump(mode="json"), "actual": value})
    return {"passed": not failed, "failed": failed}
