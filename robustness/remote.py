"""`robustness remote …`: the local command's verbs against a running service, through
`robustness.client`, for release pipelines:

    robustness remote audit --model m.safetensors --spec spec.json --wait --out report.json

uploads the model (its metadata from --metadata or the file's .json sidecar), submits the
audit, waits for it and writes its report; the exit code is the local command's, plus 4:
0 passed, 1 the gate failed, 2 bad input (the service's 4xx, a bad file), 3 a validity check
failed, 4 the job failed, was cancelled or did not end within --timeout (or the service
answered 5xx). `remote compare A B`
exits 1 when B regressed against A beyond --tolerance.

The service and the key come from --url and --key, or ROBUSTNESS_URL and ROBUSTNESS_API_KEY.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

JOB_FAILED = 4


def _client(args):
    from robustness.client import Client

    url = args.url or os.environ.get("ROBUSTNESS_URL")
    if not url:
        from robustness.errors import SpecError
        raise SpecError("remote: the service's URL is needed: --url or ROBUSTNESS_URL")
    return Client(url, args.key or os.environ.get("ROBUSTNESS_API_KEY"))


def _model_id(client, args) -> str:
    """--model-id as it is, or --model uploaded (a path) with its metadata."""
    if getattr(args, "model_id", None):
        return args.model_id
    from robustness.cli import _metadata
    from robustness.errors import SpecError

    if not args.model:
        raise SpecError("--model (a file to upload) or --model-id (a registered model) is "
                        "needed")

    metadata = _metadata(args).model_dump(mode="json", exclude_none=True)
    model = client.upload_model(args.model, metadata)
    _say(args, f"uploaded {args.model} as model {model.id}")
    return model.id


def _say(args, line: str) -> None:
    if not args.quiet:
        print(line, file=sys.stderr)


def _progress(args):
    last = [None]

    def show(job) -> None:
        seen = (job.status, job.progress.completed, job.progress.phase)
        if seen != last[0]:
            last[0] = seen
            _say(args, f"{job.kind} {job.id}: {job.status} {job.progress.completed}/"
                       f"{job.progress.total} {job.progress.phase or ''}".rstrip())
    return show


def _finish(client, args, job) -> int:
    """Wait if asked, then write what the job produced; the exit code says how it went."""
    from robustness.client import WaitTimeout

    if not args.wait:
        print(job.model_dump_json(exclude_unset=True))
        return 0
    try:
        job = client.wait(job, timeout=args.timeout, progress=_progress(args))
    except WaitTimeout as exc:
        print(f"error: {exc}", file=sys.stderr)
        return JOB_FAILED
    print(job.model_dump_json(exclude_unset=True))
    if job.status != "succeeded":
        print(f"error: {job.kind} {job.id} {job.status}"
              + (f": {job.error}" if job.error else ""), file=sys.stderr)
        return JOB_FAILED
    if job.kind == "training":
        _say(args, f"registered model {job.model_id}")
        if getattr(args, "html", None):
            Path(args.html).write_text(client.training_report_html(job.id))
        return 0
    return _write_report(client, args, job.kind, job.id)


def _write_report(client, args, kind: str, job_id: str) -> int:
    from robustness.cli import exit_code, summary_lines

    if kind == "certification":
        from robustness.certification import summary_lines as certification_lines

        report = client.certification_report(job_id, raw=True)
        html = client.certification_report_html if args.html else None
        lines, code = certification_lines(report), 0
    else:
        report = client.report(job_id, raw=True)
        html = client.report_html if args.html else None
        lines, code = summary_lines(report), exit_code(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report))
        _say(args, f"report written to {args.out}")
    if html:
        Path(args.html).write_text(html(job_id))
    _say(args, "\n".join(lines))
    return code


def cmd_upload(args) -> int:
    with _client(args) as client:
        model = client.get_model(_model_id(client, args))
    print(model.model_dump_json(exclude_unset=True))
    return 0


def _submit(kind: str):
    def command(args) -> int:
        from robustness.cli import _read_json

        spec = _read_json(args.spec, "spec")
        with _client(args) as client:
            if kind != "training":
                spec["model_id"] = _model_id(client, args)
            submit = {"audit": client.submit_audit, "training": client.submit_training,
                      "certification": client.submit_certification}[kind]
            job = submit(spec)
            _say(args, f"submitted {kind} {job.id}")
            return _finish(client, args, job)
    return command


def cmd_wait(args) -> int:
    from robustness.http_models import KIND_OF_PREFIX

    kind = KIND_OF_PREFIX.get(args.job_id.split("_", 1)[0])
    if kind is None:
        from robustness.errors import SpecError
        raise SpecError(f"wait: {args.job_id!r} is not a job id (aud_…, trn_…, crt_…)")
    args.wait = True
    with _client(args) as client:
        return _finish(client, args, client.get_job(kind, args.job_id))


def cmd_report(args) -> int:
    from robustness.http_models import KIND_OF_PREFIX

    kind = KIND_OF_PREFIX.get(args.job_id.split("_", 1)[0])
    if kind not in ("audit", "certification"):
        from robustness.errors import SpecError
        raise SpecError(f"report: {args.job_id!r} is not an audit or certification id")
    with _client(args) as client:
        return _write_report(client, args, kind, args.job_id)


def cmd_compare(args) -> int:
    """B against A; exit 1 when B regressed beyond the tolerance."""
    with _client(args) as client:
        comparison = client.compare(args.a, args.b, tolerance=args.tolerance)
        if args.html:
            Path(args.html).write_text(client.compare_html(args.a, args.b,
                                                           tolerance=args.tolerance))
    body = comparison.model_dump_json(exclude_unset=True)
    if args.out:
        Path(args.out).write_text(body)
    print(body)
    for row in comparison.regressions:
        _say(args, f"regressed: {row['attack']} at ε={row['epsilon']:g} by "
                   f"{-row['delta']:.4f} (tolerance {comparison.tolerance:g})")
    _say(args, f"verdict: {comparison.verdict}")
    return 1 if comparison.verdict == "regressed" else 0


def run(args) -> int:
    """The verb, with the service's refusals as exit code 2 and its detail on stderr."""
    import httpx

    from robustness.client import ApiError

    try:
        return args.remote_func(args)
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if exc.status < 500 else JOB_FAILED  # a 5xx is not the caller's input
    except httpx.TransportError as exc:
        print(f"error: cannot reach the service: {exc}", file=sys.stderr)
        return 2


def add_remote_command(sub) -> None:
    from robustness.cli import _model_and_data_options

    remote = sub.add_parser("remote", help="the same verbs against a running service "
                            "(upload, audit, train, certify, wait, report, compare)")
    remote.add_argument("--url", help="the service (default $ROBUSTNESS_URL)")
    remote.add_argument("--key", help="API key (default $ROBUSTNESS_API_KEY)")
    remote.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    remote.set_defaults(func=run)
    verbs = remote.add_subparsers(dest="verb", required=True)

    def model_options(verb, by_id: bool) -> None:
        _model_and_data_options(verb, model_required=not by_id, data_root=False)
        if by_id:
            verb.add_argument("--model-id", dest="model_id", help="a registered model "
                              "instead of --model")

    def outcome_options(verb, report: bool) -> None:
        verb.add_argument("--wait", action="store_true", help="wait for the job to end")
        verb.add_argument("--timeout", type=float, help="seconds to wait at most")
        if report:
            verb.add_argument("--out", help="with --wait: write the report here")
            verb.add_argument("--html", help="with --wait: write the report's HTML page here")

    upload = verbs.add_parser("upload", help="register a model file; prints the model")
    model_options(upload, by_id=False)
    upload.set_defaults(remote_func=cmd_upload)
    for kind, verb_name in (("audit", "audit"), ("training", "train"),
                            ("certification", "certify")):
        verb = verbs.add_parser(verb_name, help=f"submit {'an' if kind[0] in 'aeiou' else 'a'} {kind} "
                                                      "(--wait: and wait for it)")
        verb.add_argument("--spec", required=True, help=f"{kind} spec JSON")
        if kind != "training":
            model_options(verb, by_id=True)
        outcome_options(verb, report=kind != "training")
        if kind == "training":
            verb.add_argument("--html", help="with --wait: write the training's page here")
        verb.set_defaults(remote_func=_submit(kind))
    wait = verbs.add_parser("wait", help="wait for a job; then as --wait does")
    wait.add_argument("job_id")
    outcome_options(wait, report=True)
    wait.set_defaults(remote_func=cmd_wait)
    report = verbs.add_parser("report", help="fetch an audit's or certification's report")
    report.add_argument("job_id")
    report.add_argument("--out", help="write the report here")
    report.add_argument("--html", help="write the report's HTML page here")
    report.set_defaults(remote_func=cmd_report)
    compare = verbs.add_parser("compare", help="audit B against audit A (same examples): "
                               "exit 1 if B regressed")
    compare.add_argument("a", help="the baseline audit")
    compare.add_argument("b", help="the audit compared with it")
    compare.add_argument("--tolerance", type=float, default=0.01)
    compare.add_argument("--out", help="also write the comparison JSON here")
    compare.add_argument("--html", help="also write the comparison page here")
    compare.set_defaults(remote_func=cmd_compare)
