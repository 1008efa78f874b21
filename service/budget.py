"""What a job would cost, counted before it is queued: forward+backward passes of one example
through the model (the unit the benchmarks use). An absurd job (n × steps × restarts × ε far
beyond any real audit) is refused with the figure, instead of holding a GPU for days."""

from __future__ import annotations

from robustness.spec import SPLIT_SIZES
from robustness.training.spec import ADVERSARIAL
from service.problems import Problem


def _examples(dataset) -> int | None:
    size = SPLIT_SIZES.get((dataset.name, dataset.split))
    if dataset.n is not None:
        return dataset.n
    return None if size is None else size - dataset.offset


def audit_passes(spec) -> int | None:
    n = _examples(spec.dataset)
    if n is None:
        return None  # imagefolder/tensors: unknown until loaded
    per = sum(a.passes_per_example * a.runs(spec.grid(a)) for a in spec.attacks)
    return n * (per + 1)  # + the clean pass


def certification_passes(spec) -> int | None:
    """n0 + n forward passes per example, and the attack's (`CertifySpec`)."""
    n = _examples(spec.dataset)
    return None if n is None else n * spec.forward_passes_per_example()


def training_passes(spec) -> int | None:
    """Every pass a training makes: its method's on the training data, and the held-out
    monitors' every epoch (clean, FGSM and PGD with restarts), the teacher's epochs included."""
    n = _examples(spec.dataset)
    if n is None:
        return None
    r = spec.resolved()
    per_epoch = n * ((spec.attack_steps + 1) if spec.method in ADVERSARIAL else 1)
    v = spec.validation
    robust_monitor = bool(spec.monitor_epsilon) and v.n > 0
    # clean and FGSM evaluations (4 passes) plus PGD's steps × restarts, per held-out example
    per_epoch += v.n * ((v.steps * v.restarts + 4) if robust_monitor else 1)
    epochs = spec.epochs + (r.get("teacher_epochs") or 0)
    return per_epoch * epochs


def check_budget(passes: int | None, limit: int, what: str, knobs: str) -> None:
    if passes is not None and passes > limit:
        raise Problem(422, f"budget: this {what} needs about {passes:.3g} example "
                           f"forward+backward passes, more than this service's limit of "
                           f"{limit:.3g} (ROBUSTNESS_MAX_JOB_PASSES); reduce {knobs}")


def check_batch_sizes(spec, limit: int) -> None:
    """Memory per job grows with the batch: refuse batches above the service's limit."""
    fields = [("batch_size", getattr(spec, "batch_size", None))]
    fields += [(f"attacks[{i}].batch_size", a.batch_size)
               for i, a in enumerate(getattr(spec, "attacks", []))]
    attack = getattr(spec, "attack", None)  # a certification's
    if attack is not None:
        fields.append(("attack.batch_size", attack.batch_size))
    validation = getattr(spec, "validation", None)
    if validation is not None:
        fields.append(("validation.batch_size", validation.batch_size))
    for name, value in fields:
        if value is not None and value > limit:
            raise Problem(422, f"{name}: {value} is above this service's limit of {limit} "
                               f"(ROBUSTNESS_MAX_BATCH_SIZE)")


MEASURED_JOBS = 20  # the most recent succeeded jobs of a kind that set its throughput


def throughput(gw, kind: str) -> tuple[float | None, int]:
    """This deployment's passes per second for a kind, over its last MEASURED_JOBS succeeded
    jobs of known cost (total passes over total run time), and how many jobs that was."""
    from sqlalchemy import select

    from store.db import JobRecord

    with gw.db.session() as s:
        rows = s.execute(select(JobRecord.passes, JobRecord.seconds).where(
            JobRecord.kind == kind, JobRecord.status == "succeeded",
            JobRecord.passes.is_not(None), JobRecord.seconds > 0)
            .order_by(JobRecord.finished_at.desc()).limit(MEASURED_JOBS)).all()
    seconds = sum(r.seconds for r in rows)
    return (sum(r.passes for r in rows) / seconds if seconds > 0 else None), len(rows)


def estimate(gw, kind: str, passes: int | None) -> dict:
    """A dry run's answer: the job's cost, what the per-job limit leaves, and how long it
    should take at the measured throughput (None until a job of its kind has run here)."""
    rate, jobs = throughput(gw, kind)
    limit = gw.settings.max_job_passes
    return {"kind": kind, "passes": passes, "limit": limit,
            "budget_left": None if passes is None else limit - passes,
            "passes_per_second": rate, "measured_jobs": jobs,
            "estimated_seconds": None if passes is None or rate is None else passes / rate}


def retry_after(gw, job) -> str:
    """When to poll next: the job's estimated time left at the measured throughput, within
    1-30 s; 2 s when there is nothing to estimate from."""
    rate, _ = throughput(gw, job.kind) if job.passes else (None, 0)
    if not rate:
        return "2"
    done = job.progress_completed / job.progress_total if job.progress_total else 0.0
    return str(max(1, min(30, round(job.passes * (1 - done) / rate))))
