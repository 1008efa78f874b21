"""docker-compose.yml cannot run here (no Docker engine), so its contents are checked against
what the tests do run: the gateway and worker commands and the environment variables of the
split end-to-end tests, read by the same Settings."""

from __future__ import annotations

from pathlib import Path

import yaml

from store.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


WORKERS = ("audit-worker", "training-worker")


def test_services_commands_and_health_checks():
    from store.kinds import KINDS

    services = compose()["services"]
    assert set(services) == {"redis", "postgres", "gateway", *WORKERS}
    for name in ("redis", "postgres", "gateway"):
        assert services[name]["healthcheck"]["test"], name
    # The exact commands tests/service_processes.py starts for the split deployment.
    assert services["gateway"]["command"][:3] == ["robustness", "serve", "--no-worker"]
    queues, devices = [], []
    for name in WORKERS:
        command = services[name]["command"]
        assert command[:3] == ["robustness", "worker", "--queues"]
        assert command[4:] == ["--concurrency", "1"]
        queues += command[3].split(",")
        (gpu,) = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
        devices += gpu["device_ids"]
    # Every kind's queue has exactly one pool; trainings apart from audits; one GPU each.
    assert sorted(queues) == sorted(k.queue for k in KINDS.values())
    assert "trainings" not in services["audit-worker"]["command"][3]
    assert len(devices) == len(set(devices)) == len(WORKERS)
    for name in ("gateway", *WORKERS):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_environment_is_read_by_the_settings(monkeypatch):
    services = compose()["services"]
    env = services["gateway"]["environment"]
    assert all(env == services[w]["environment"] for w in WORKERS)
    for key in ("DATABASE_URL", "REDIS_URL", "ROBUSTNESS_HOME", "ROBUSTNESS_DATA_ROOT"):
        monkeypatch.setenv(key, env[key])
    settings = Settings()
    assert settings.sqlalchemy_url == \
        "postgresql+psycopg://postgres:robustness@postgres:5432/robustness"
    assert settings.broker_url == "redis://redis:6379/0" and not settings.embedded_broker
    assert str(settings.home) == "/var/lib/robustness"
    assert str(settings.data_root) == "/data"
    # Gateway and workers share the artifact store: one volume mounted at ROBUSTNESS_HOME.
    pg = compose()["services"]["postgres"]["environment"]
    assert pg["POSTGRES_PASSWORD"] in env["DATABASE_URL"] and pg["POSTGRES_DB"] in \
        env["DATABASE_URL"]
    for name in ("gateway", *WORKERS):
        assert f"artifacts:{env['ROBUSTNESS_HOME']}" in services[name]["volumes"]


def test_the_image_installs_the_service_and_worker_extras():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert '".[service,worker]"' in dockerfile
    for package in ("robustness", "store", "workers", "service"):
        assert f"COPY {package} {package}" in dockerfile
