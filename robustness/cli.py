"""`robustness` command line: audits, training and the service.

`audit`, `certify`, `train` and `demo` are here; the service adds `serve` and `keys`, the workers
`worker`, each through the `robustness.commands` entry point (this package never imports
either; installed without them, the library's commands still work).

Exit codes: 0 done (gate passed or absent), 1 the report's gate failed, 2 bad input (spec,
model, data), with one line on stderr saying what to fix, 3 a validity check failed (the
report's figures cannot be trusted as they are; this wins over 1). `robustness remote` (the
same verbs against a running service, `robustness.remote`) adds 4: the job failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from robustness.errors import RobustnessError, SpecError


def _read_json(path: str, what: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SpecError(f"{what} file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise SpecError(f"{what} file {path} is not valid JSON: {exc}") from None


def _card(args) -> dict | None:
    """The model's card (model.json, written by `robustness train`) when it has one."""
    path = args.metadata or str(Path(args.model).with_suffix(".json"))
    if not Path(path).is_file():
        return None
    raw = _read_json(path, "metadata")
    return raw if isinstance(raw, dict) and "training" in raw else None


def _metadata(args):
    from pydantic import ValidationError

    from robustness.models import ModelMetadata
    from robustness.spec import format_validation_error

    path = args.metadata
    sidecar = Path(args.model).with_suffix(".json")
    if path is None and sidecar.is_file():
        path = str(sidecar)
    raw = _read_json(path, "metadata") if path else {}
    raw = raw.get("metadata", raw)  # a model card carries its metadata under "metadata"
    for key in ("architecture", "num_classes"):
        if getattr(args, key) is not None:
            raw[key] = getattr(args, key)
    try:
        return ModelMetadata.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(f"metadata: {format_validation_error(exc)}") from None


class _Bar:
    """tqdm over the sweep's units (attack × ε × batch), on stderr."""

    def __init__(self, enabled: bool):
        self.bar = None
        self.enabled = enabled

    def __call__(self, done: int, total: int, phase: str):
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="step", file=sys.stderr, dynamic_ncols=True)
        self.bar.set_description(phase, refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def summary_lines(report: dict) -> list[str]:
    clean = report["clean"]
    lines = [f"clean accuracy {clean['accuracy']:.4f} (n={len(report['examples']['index'])})",
             (f"{'attack':<14}{'norm':<6}{'ε':>8}{'accuracy':>10}{'success':>9}"
              f"{'conf|err':>10}{'silent@0.9':>11}")]
    for r in report["results"]:
        conf = r["mean_confidence_on_errors"]
        silent = r["silent_error_rate"].get("0.9")
        lines.append(f"{r['label']:<14}{r['norm']:<6}{r['epsilon']:>8g}{r['accuracy']:>10.4f}"
                     f"{(r['attack_success_rate'] or 0):>9.4f}"
                     f"{'-' if conf is None else format(conf, '.4f'):>10}"
                     f"{'-' if silent is None else format(silent, '.4f'):>11}")
    for check in report.get("checks", []):
        if check["status"] != "pass":
            lines.append(f"check {check['status'].upper()} {check['id']}: {check['detail']}")
    if "gate" in report:
        lines.append("gate: " + ("passed" if report["gate"]["passed"] else
                                 f"FAILED {json.dumps(report['gate']['failed'])}"))
    return lines


def cmd_audit(args) -> int:
    from robustness.audit import audit_model_file, training_recipe
    from robustness.evaluation.gate import resolve_baselines
    from robustness.spec import parse_audit_spec

    spec = resolve_baselines(parse_audit_spec(_read_json(args.spec, "spec")),
                             lambda path: _read_json(path, "baseline report"))
    recipe = training_recipe(_card(args))
    bar = _Bar(enabled=not args.quiet)
    try:
        # The page's gallery shows adversarial images: collected for it too.
        result = audit_model_file(spec, args.model, _metadata(args), data_root=args.data_root,
                                  device=args.device, progress=bar,
                                  collect_adversarial=bool(args.adversarial_out or args.html),
                                  model_extra={"training": recipe} if recipe else None)
    finally:
        bar.close()
    report = result.report
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report))
    if args.adversarial_out:
        from robustness.evaluation.export import save_adversarial
        save_adversarial(result, report, args.adversarial_out)
    if args.html:
        from robustness.evaluation.export import adversarial_tensors
        from robustness.pages import render_audit_page
        from robustness.pages.gallery import TensorImages

        Path(args.html).write_text(render_audit_page(
            report, TensorImages(adversarial_tensors(result, report))))
    if not args.quiet:
        print("\n".join(summary_lines(report)), file=sys.stderr)
        print(f"report written to {out}", file=sys.stderr)
    return exit_code(report)


def cmd_report(args) -> int:
    """Read back reports: an audit's summary or page, several audits compared, a training's
    page (its model card) or a certification's page."""
    docs = [(Path(f).name, _read_json(f, "report")) for f in args.files]
    kinds = {_report_kind(name, doc) for name, doc in docs}
    if len(kinds) > 1:
        raise SpecError(f"files: {', '.join(sorted(kinds))} reports cannot go on one page")
    (kind,) = kinds
    if kind != "audit" and len(docs) > 1:
        raise SpecError(f"files: only audit reports are compared; these are {kind} reports")
    if args.adversarial and (kind != "audit" or len(docs) > 1):
        raise SpecError("--adversarial: an audit's adversarial set feeds its own page only")
    from robustness import pages

    if kind == "audit" and len(docs) > 1:
        from robustness.evaluation.compare import compare_reports

        page = pages.render_comparison_page(docs, args.tolerance)
        verdicts = [compare_reports(docs[0][1], doc, args.tolerance)["verdict"]
                    for _, doc in docs[1:]]
        lines = [f"{name} against {docs[0][0]}: {v}" for (name, _), v in zip(docs[1:], verdicts)]
        code = 1 if "regressed" in verdicts else 0
    elif kind == "audit":
        report = docs[0][1]
        images = None
        if args.adversarial:
            from robustness.pages.gallery import SafetensorsImages, TensorImages

            path = Path(args.adversarial)
            if path.suffix == ".npz":
                import numpy as np
                import torch

                with np.load(path) as arrays:
                    images = TensorImages({k: torch.from_numpy(arrays[k]) for k in arrays.files})
            else:
                images = SafetensorsImages(str(path))
        page = pages.render_audit_page(report, images, epsilon=args.epsilon,
                                       gallery_size=args.gallery)
        lines, code = summary_lines(report), exit_code(report)
    elif kind == "training":
        page = pages.render_training_page(docs[0][1])
        t = docs[0][1]["training"]
        line = (f"{t.get('method')}: {t.get('epochs_run')} epochs, kept epoch "
                f"{t.get('selected_epoch')} ({t.get('checkpoint')})")
        lines, code = [line], 0
    else:
        from robustness.certification import summary_lines as certification_lines
        page = pages.render_certification_page(docs[0][1])
        lines, code = certification_lines(docs[0][1]), 0
    if args.html:
        Path(args.html).parent.mkdir(parents=True, exist_ok=True)
        Path(args.html).write_text(page)
    if not args.quiet:
        print("\n".join(lines), file=sys.stderr)
        if args.html:
            print(f"page written to {args.html}", file=sys.stderr)
    return code


def _report_kind(name: str, doc) -> str:
    if isinstance(doc, dict):
        if "examples" in doc and "results" in doc:
            return "audit"
        if "certified_accuracy" in doc:
            return "certification"
        if "training" in doc:
            return "training"
    raise SpecError(f"{name}: neither an audit or certification report nor a model card")


def exit_code(report: dict) -> int:
    """3 if a validity check failed (the figures cannot be trusted; this wins), 1 if the
    gate failed, else 0."""
    from robustness.evaluation.gate import worst_check

    if worst_check(report) == "fail":
        return 3
    return 1 if "gate" in report and not report["gate"]["passed"] else 0


def cmd_certify(args) -> int:
    from robustness.certification import certify_model_file, summary_lines
    from robustness.spec import parse_certify_spec

    spec = parse_certify_spec(_read_json(args.spec, "spec"))
    bar = _Bar(enabled=not args.quiet)
    try:
        report = certify_model_file(spec, args.model, _metadata(args), data_root=args.data_root,
                                    device=args.device, progress=bar)
    finally:
        bar.close()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report))
    if args.html:
        from robustness.pages import render_certification_page
        Path(args.html).write_text(render_certification_page(report))
    if not args.quiet:
        print("\n".join(summary_lines(report)), file=sys.stderr)
        print(f"report written to {out}", file=sys.stderr)
    return 0


def _epoch_line(entry: dict) -> str:
    def pct(key):
        v = entry.get(key)
        return "    -" if v is None else f"{100 * v:5.1f}"

    flag = "  CATASTROPHIC OVERFITTING" if entry.get("catastrophic_overfitting") else ""
    return (f"{entry['phase']:<13}epoch {entry['epoch']:>3}  loss {entry['loss']:.4f}  "
            f"clean {pct('clean_accuracy')}  fgsm {pct('fgsm_accuracy')}  "
            f"pgd {pct('pgd_accuracy')}  {entry['train_seconds'] + entry['monitor_seconds']:.1f}s"
            f"{flag}")


def cmd_train(args) -> int:
    from robustness.models import load_model
    from robustness.training import parse_training_spec, save_training, train_from_spec
    from robustness.training.monitor import describe_collapse

    spec = parse_training_spec(_read_json(args.spec, "spec"))
    teacher = None
    if spec.method == "distillation" and args.teacher:
        teacher_meta = argparse.Namespace(model=args.teacher, metadata=args.teacher_metadata,
                                          architecture=None, num_classes=None)
        teacher = load_model(args.teacher, _metadata(teacher_meta), device=args.device)
    elif args.teacher:
        raise SpecError(f"--teacher: only used by method 'distillation', not '{spec.method}'")
    elif spec.teacher_model_id:
        raise SpecError("teacher_model_id: names a model registered with the service; "
                        "on the command line pass the teacher's file with --teacher")
    bar = _Bar(enabled=not args.quiet)

    def log(entry):
        if not args.quiet:
            line = _epoch_line(entry)
            (bar.bar.write(line, file=sys.stderr) if bar.bar is not None
             else print(line, file=sys.stderr))

    try:
        result = train_from_spec(spec, data_root=args.data_root, device=args.device,
                                 teacher=teacher, progress=bar, log=log)
    finally:
        bar.close()
    weights = save_training(result, args.out)
    if args.html:
        from robustness.pages import render_training_page
        Path(args.html).write_text(render_training_page(result.card))
    if not args.quiet:
        t = result.card["training"]
        if t["catastrophic_overfitting"]:
            print(describe_collapse(t["catastrophic_overfitting"]), file=sys.stderr)
        print(f"kept epoch {t['selected_epoch']} ({t['checkpoint']}); model written to "
              f"{weights}, model card {weights.with_suffix('.json')}", file=sys.stderr)
    return 0


def cmd_demo(args) -> int:
    from robustness.demo import run_demo
    return run_demo(Path(args.out_dir), device=args.device)


def _extensions() -> list:
    """`add_commands(subparsers)` of every installed package that extends the command."""
    from importlib.metadata import entry_points

    # Their modules import nothing optional at load time, so a failure here is a real bug.
    entries = sorted(entry_points(group="robustness.commands"), key=lambda e: e.name)
    return [entry.load() for entry in entries]


def _model_and_data_options(command, *, model_required: bool = True,
                            data_root: bool = True) -> None:
    command.add_argument("--model", required=model_required,
                         help="safetensors, .pt2, TorchScript or .pt")
    command.add_argument("--metadata", help="model metadata JSON (keys of POST /v1/models); "
                         "default: the model file's .json sidecar if present")
    command.add_argument("--architecture", help="registry name, for weights-only formats")
    command.add_argument("--num-classes", dest="num_classes", type=int)
    if data_root:
        command.add_argument("--data-root", help="where data sets are (default "
                             "$ROBUSTNESS_DATA_ROOT)")


def _device_options(command) -> None:
    command.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda")
    command.add_argument("-q", "--quiet", action="store_true",
                         help="no progress bar or summary")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robustness", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add_commands in _extensions():
        add_commands(sub)
    audit = sub.add_parser("audit", help="ε-sweep audit of a model file; writes a JSON report")
    audit.add_argument("--spec", required=True, help="audit spec JSON (keys of POST /v1/audits)")
    _model_and_data_options(audit)
    audit.add_argument("--out", default="report.json", help="report path (default report.json)")
    audit.add_argument("--adversarial-out", help="also save the adversarial examples "
                       "(.safetensors or .npz)")
    audit.add_argument("--html", help="also write the report as one HTML page")
    _device_options(audit)
    audit.set_defaults(func=cmd_audit)
    certify = sub.add_parser("certify", help="randomized-smoothing certificates (certified L2 "
                             "radii) for a model file; writes a JSON report")
    certify.add_argument("--spec", required=True, help="certification spec JSON (dataset, "
                         "sigma, n0, n, alpha, radii, batch_size, seed)")
    _model_and_data_options(certify)
    _device_options(certify)
    certify.add_argument("--out", default="certification.json",
                         help="report path (default certification.json)")
    certify.add_argument("--html", help="also write the report as one HTML page, with the "
                         "certified and attacked accuracy plotted against the radius")
    certify.set_defaults(func=cmd_certify)
    train = sub.add_parser("train", help="train (or adversarially train) a model from a spec; "
                           "writes model.safetensors and model.json")
    train.add_argument("--spec", required=True, help="training spec JSON (keys of "
                       "POST /v1/trainings)")
    train.add_argument("--out", required=True, help="output directory")
    train.add_argument("--teacher", help="distillation: an existing teacher model file "
                       "(instead of training one in this job)")
    train.add_argument("--teacher-metadata", dest="teacher_metadata",
                       help="the teacher's metadata JSON (default: its .json sidecar)")
    train.add_argument("--data-root", help="where data sets are (default $ROBUSTNESS_DATA_ROOT)")
    train.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda")
    train.add_argument("-q", "--quiet", action="store_true", help="no progress or epoch lines")
    train.add_argument("--html", help="also write the training's page: its history plotted, "
                       "catastrophic overfitting marked")
    train.set_defaults(func=cmd_train)
    report = sub.add_parser("report", help="read back reports: an audit's page, several audits "
                            "compared (the first is the baseline), a training's page (its "
                            "model.json) or a certification's page")
    report.add_argument("files", nargs="+", help="report JSON files (or model cards)")
    report.add_argument("--html", help="write the page here")
    report.add_argument("--adversarial", help="the audit's --adversarial-out file: the "
                        "gallery shows its images")
    report.add_argument("--epsilon", type=float, help="the ε of the per-class plots "
                        "(default: the middle of the grid)")
    report.add_argument("--gallery", type=int, default=24, help="examples in the gallery "
                        "(default 24)")
    report.add_argument("--tolerance", type=float, default=0.01, help="comparisons: how far "
                        "an accuracy may fall before the verdict is 'regressed' (default 0.01)")
    report.add_argument("-q", "--quiet", action="store_true", help="no summary")
    report.set_defaults(func=cmd_report)
    demo = sub.add_parser("demo", help="train a small model on scikit-learn's digits and audit it")
    demo.add_argument("--out-dir", default="out/demo")
    demo.add_argument("--device", default="auto")
    demo.set_defaults(func=cmd_demo)
    from robustness.remote import add_remote_command
    add_remote_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RobustnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
