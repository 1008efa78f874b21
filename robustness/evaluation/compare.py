"""Two audits of the same examples, B against A (the baseline): per attack and ε the change
in accuracy and silent-error rates, the examples that flipped (robust in A and broken in B,
and the reverse), and a verdict under a tolerance. What a release review and a scheduled
audit's regression check read."""

from __future__ import annotations

from robustness.errors import SpecError


def _same_examples(a: dict, b: dict) -> None:
    da, db = a.get("dataset", {}), b.get("dataset", {})
    for key in ("name", "split", "sha256"):
        if da.get(key) != db.get(key):
            raise SpecError(f"the audits are not on the same data: dataset {key} "
                            f"{da.get(key)!r} against {db.get(key)!r}")
    if a["examples"]["index"] != b["examples"]["index"]:
        raise SpecError("the audits are not on the same examples (dataset n, offset or seed "
                        "differ): per-example flips need the same examples in the same order")


def _columns(report: dict) -> dict:
    return {(c["label"], c["epsilon"]): c for c in report["examples"]["adversarial"]}


def _rows(report: dict) -> dict:
    return {(r["label"], r["epsilon"]): r for r in report["results"]}


def compare_reports(a: dict, b: dict, tolerance: float = 0.01) -> dict:
    """B against A. `verdict`: `regressed` if an accuracy (clean or under an attack both ran)
    fell by more than `tolerance`, else `improved` if one rose by more, else `unchanged`."""
    _same_examples(a, b)
    labels = a["examples"]["label"]
    ra, rb, ca, cb = _rows(a), _rows(b), _columns(a), _columns(b)
    clean = {"a": a["clean"]["accuracy"], "b": b["clean"]["accuracy"]}
    clean["delta"] = clean["b"] - clean["a"]
    results = []
    for key in [k for k in ra if k in rb]:
        x, y = ra[key], rb[key]
        pred_a, pred_b = ca[key]["pred"], cb[key]["pred"]
        broken = [a["examples"]["index"][i] for i, t in enumerate(labels)
                  if pred_a[i] == t and pred_b[i] != t]
        fixed = [a["examples"]["index"][i] for i, t in enumerate(labels)
                 if pred_a[i] != t and pred_b[i] == t]
        silent = {tau: y["silent_error_rate"][tau] - x["silent_error_rate"][tau]
                  for tau in x.get("silent_error_rate", {}) if tau in
                  y.get("silent_error_rate", {})}
        results.append({"attack": key[0], "norm": x["norm"], "epsilon": key[1],
                        "a": x["accuracy"], "b": y["accuracy"],
                        "delta": y["accuracy"] - x["accuracy"],
                        "silent_error_rate_delta": silent,
                        "broken_in_b": broken, "fixed_in_b": fixed})
    deltas = [clean["delta"], *(r["delta"] for r in results)]
    regressions = ([{"attack": "clean", "epsilon": 0.0, "delta": clean["delta"]}]
                   if clean["delta"] < -tolerance else [])
    regressions += [{"attack": r["attack"], "epsilon": r["epsilon"], "delta": r["delta"]}
                    for r in results if r["delta"] < -tolerance]
    verdict = "regressed" if regressions else \
        "improved" if any(d > tolerance for d in deltas) else "unchanged"
    return {"verdict": verdict, "tolerance": tolerance, "regressions": regressions,
            "clean": clean, "results": results,
            "only_in_a": [{"attack": k[0], "epsilon": k[1]} for k in ra if k not in rb],
            "only_in_b": [{"attack": k[0], "epsilon": k[1]} for k in rb if k not in ra],
            "examples": len(labels)}
