"""The production stack file: the services the README promises, valid for `docker compose config`."""

import os
import shutil
import subprocess
from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.yml"


def test_compose_has_the_production_services():
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    assert set(services) == {"postgres", "redis", "web", "worker-cpu", "worker-gpu", "beat"}
    assert "gunicorn" in services["web"]["command"]
    assert "-Q default" in services["worker-cpu"]["command"]
    assert "-Q gpu" in services["worker-gpu"]["command"]
    assert services["worker-gpu"]["runtime"] == "nvidia"
    assert services["worker-gpu"]["build"]["args"]["EXTRAS"] == "gpu"
    assert "DatabaseScheduler" in services["beat"]["command"]


def test_compose_config_validates():
    binary = shutil.which("docker-compose")
    command = [binary, "config", "-q"] if binary else ["docker", "compose", "config", "-q"]
    if not binary and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        raise AssertionError("neither docker-compose nor the docker compose plugin is installed (.ci/run installs docker-compose)")
    env = dict(os.environ, SECRET_KEY="validate-only")
    result = subprocess.run(command, cwd=COMPOSE.parent, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_workers_scale_out_on_one_broker_and_database():
    """`docker compose up --scale worker-gpu=N`: replicas need no fixed name or port, and each gets its own node name."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name in ("worker-cpu", "worker-gpu"):
        service = services[name]
        assert "container_name" not in service and "ports" not in service, f"{name} could not be scaled"
        assert "@%h" in service["command"], f"{name}'s replicas would share one Celery node name"
    gpu = services["worker-gpu"]
    assert "--concurrency ${GPU_WORKER_PROCESSES:-1}" in gpu["command"]
    assert gpu["deploy"]["replicas"] == "${GPU_WORKERS:-1}"
    assert gpu["environment"]["STEPMARK_WORKER_GPUS"] == "${STEPMARK_WORKER_GPUS:-0}"
    # Every worker reaches the one broker and database of the stack.
    env = yaml.safe_load(COMPOSE.read_text())["x-stepmark"]["environment"]
    assert env["CELERY_BROKER_URL"].startswith("redis://redis:") and "@postgres:5432/" in env["DATABASE_URL"]


def test_each_gpu_pool_process_gets_its_own_device():
    from stepmark.celery import gpu_for_process

    assert [gpu_for_process(i, "0,1,2,3") for i in range(5)] == ["0", "1", "2", "3", "0"]
    assert gpu_for_process(2, " 5 , 7 ") == "5"
    assert gpu_for_process(0, "") is None
