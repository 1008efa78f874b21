"""Pass/fail rules over a finished report, so a pipeline can block a release on robustness."""

from __future__ import annotations

import operator
from collections.abc import Callable

from robustness.errors import SpecError

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


def resolve_baselines(spec, load_report: Callable[[str], dict]):
    """The spec with each baseline rule's `baseline_value`: the same metric, attack and ε in
    the baseline's report (`load_report(rule.baseline)`: from the store in the service, a
    file in the CLI), so the job itself needs nothing but its spec."""
    rules = []
    for i, rule in enumerate(spec.gate or []):
        if rule.baseline is not None:
            report = load_report(rule.baseline)
            try:
                value = _metric(rule, report)
            except (StopIteration, KeyError):
                raise SpecError(f"gate[{i}].baseline: {rule.baseline} has no {rule.metric} of "
                                f"'{rule.attack}' at ε={rule.epsilon}") from None
            if not isinstance(value, int | float):
                raise SpecError(f"gate[{i}].baseline: {rule.baseline}'s {rule.metric} of "
                                f"'{rule.attack}' at ε={rule.epsilon} has no value")
            rule = rule.model_copy(update={"baseline_value": float(value)})
        rules.append(rule)
    return spec.model_copy(update={"gate": rules}) if spec.gate else spec


def _baseline(rule) -> float:
    if rule.baseline_value is None:
        raise SpecError(f"gate: the rule against baseline {rule.baseline!r} was not resolved "
                        f"(resolve_baselines)")
    return rule.baseline_value


def _bound(rule) -> float:
    """The rule's threshold: its value, or the baseline's figure moved by the tolerance in
    the direction that passes."""
    if rule.baseline is None:
        return rule.value
    return _baseline(rule) + (-rule.tolerance if rule.op in (">=", ">") else rule.tolerance)


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
        if value is None:
            ok = rule.op in ("<=", "<")
        elif rule.op == "==" and rule.baseline is not None:
            ok = abs(value - _baseline(rule)) <= rule.tolerance
        else:
            ok = OPS[rule.op](value, _bound(rule))
        if not ok:
            failed.append({**rule.model_dump(mode="json"), "actual": value})
    return {"passed": not failed, "failed": failed}
