"""The layering of README's "Layout": which package may import which, and the places that
must stay single (the environment's paths, the job kinds)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("robustness", "store", "workers", "service")
# Package -> the project packages and third-party roots it must never import.
FORBIDDEN = {
    "robustness": {"store", "workers", "service", "fastapi", "celery", "sqlalchemy", "redis",
                   "starlette", "kombu", "alembic"},
    "store": {"workers", "service", "fastapi", "starlette"},
    "workers": {"service", "fastapi", "starlette"},
    "service": {"workers"},
}


def _imports(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def _sources(package: str):
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_only_the_layers_below_it(package):
    bad = {str(p.relative_to(REPO)): sorted(_imports(p) & FORBIDDEN[package])
           for p in _sources(package)}
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_environments_paths_are_read_in_one_place():
    """ROBUSTNESS_HOME and ROBUSTNESS_DATA_ROOT are read by robustness/paths.py alone."""
    readers = set()
    for package in PACKAGES:
        for path in _sources(package):
            text = path.read_text()
            if re.search(r"(environ\.get|getenv|environ\[)\(?\s*[\"']ROBUSTNESS_(HOME|DATA_ROOT)",
                         text):
                readers.add(str(path.relative_to(REPO)))
    assert readers == {"robustness/paths.py"}


def test_nothing_switches_on_a_job_kinds_name():
    """Kinds are one table (store/kinds.py): no code compares against a kind's name."""
    pattern = re.compile(r"""(==|!=)\s*["'](audit|training)["']|["'](audit|training)["']\s*(==|!=)""")
    hits = [f"{p.relative_to(REPO)}:{i}" for package in ("store", "workers", "service")
            for p in _sources(package)
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert hits == []


def test_every_job_kind_has_its_task_queue_and_runner():
    """One entry in store/kinds.py is all a kind needs: the worker's task (late-acknowledged,
    with the kind's time limit and a backstop), the queue route and the runner follow."""
    from store.kinds import KINDS
    from workers.celery_app import app
    from workers.sandbox_child import runner
    from workers.settings import WorkerSettings
    from workers.tasks import GRACE

    settings = WorkerSettings()
    for kind in KINDS.values():
        task = app.tasks[kind.task]
        assert task.time_limit == kind.time_limit(settings) + GRACE
        assert task.acks_late and task.reject_on_worker_lost
        assert app.conf.task_routes[kind.task] == {"queue": kind.queue}
        assert callable(runner(kind.name))


def test_the_contracts_job_kinds_are_the_kinds_table():
    """robustness.http_models names the kinds for clients; store/kinds.py defines them."""
    from robustness.http_models import JOB_KINDS, KIND_OF_PREFIX, SEGMENTS
    from store.kinds import KINDS

    assert tuple(KINDS) == JOB_KINDS
    assert SEGMENTS == {k.name: k.segment for k in KINDS.values()}
    assert KIND_OF_PREFIX == {k.id_prefix: k.name for k in KINDS.values()}
