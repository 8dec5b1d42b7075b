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
