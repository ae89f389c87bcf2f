"""The README and the compose file say what the code does: the test command is the one CI
runs, every setting is documented, the compose file wires Redis and the nodes."""

from __future__ import annotations

import re

import yaml

from signaling.settings import Settings
from tests.support.server import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text("utf-8")


def test_readme_test_command_is_exactly_what_ci_runs() -> None:
    lines = (REPO_ROOT / ".ci" / "run").read_text("utf-8").splitlines()
    command = lines[next(i for i, line in enumerate(lines) if line.startswith("cd ")) + 1]
    assert command in README.splitlines()


def test_readme_install_and_run_command() -> None:
    assert "pip install -e . && dragoman serve" in README.splitlines()


def test_every_setting_is_in_the_readme_with_its_variable() -> None:
    for name in Settings.model_fields:
        assert f"`DRAGOMAN_{name.upper()}`" in README, name


def test_compose_file_runs_nodes_on_a_persistent_redis() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text("utf-8"))
    services = compose["services"]
    redis = services["redis"]
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    nodes = [service for name, service in services.items() if name.startswith("node")]
    assert len(nodes) >= 2
    for node in nodes:
        env = node["environment"]
        assert env["DRAGOMAN_REDIS_URL"].startswith("redis://")
        assert "DRAGOMAN_SECRET" in env
        assert "dragoman serve --host 0.0.0.0" in " ".join(node["command"])
        assert any("/healthz" in part for part in node["healthcheck"]["test"])
        assert any(re.search(r":/data$", volume) for volume in node["volumes"])
