"""The README and the compose file say what the code does: the test command is the one CI
runs, every setting is documented, the compose file wires Redis, the nodes, the TURN
server and the TLS proxy, with settings a node accepts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from signaling.settings import Settings, load_settings
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


def test_compose_file_follows_the_compose_specification() -> None:
    """What `docker compose config` would refuse (an unknown key, a wrong type) fails here:
    Docker cannot run on this machine, the specification's schema can."""
    schema = json.loads((Path(__file__).parent / "compose_spec" / "compose-spec.json").read_text())
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in jsonschema.Draft7Validator(schema).iter_errors(compose())
    ]
    assert errors == []


def compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text("utf-8"))


def with_defaults(value: str) -> str:
    """A compose value as `docker compose` resolves it with only the required variables set:
    `${X:-default}` gives its default, `${X:?message}` a stand-in of 40 characters."""
    value = re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", "r" * 40, value)
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def nodes() -> list[dict]:
    return [service for name, service in compose()["services"].items() if name.startswith("node")]


def test_compose_nodes_have_settings_a_node_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    ranges = []
    for node in nodes():
        env = {name: with_defaults(str(value)) for name, value in node["environment"].items()}
        for name in [key for key in list(env) if not key.startswith("DRAGOMAN_")]:
            del env[name]
        with monkeypatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            settings = load_settings()
        assert settings.rtc_ports is not None
        ranges.append(settings.rtc_ports)
        assert settings.turn_urls and settings.turn_secret is not None
        assert settings.public_url is not None and settings.public_url.startswith("https://")
        # The secret comes from the environment, never from the file.
        assert node["environment"]["DRAGOMAN_TURN_SECRET"].startswith("${DRAGOMAN_TURN_SECRET:?")
    # On the host's network, two nodes on the same ports would take each other's.
    lower, higher = sorted(ranges)
    assert lower[1] < higher[0]


def test_compose_turn_server_uses_the_shared_secret_and_its_relay_ports() -> None:
    turn = compose()["services"]["turn"]
    env = turn["environment"]
    assert env["TURN_SECRET"].startswith("${DRAGOMAN_TURN_SECRET:?")
    script = " ".join(turn["command"])
    for option in ("use-auth-secret", "static-auth-secret=$$TURN_SECRET", "fingerprint"):
        assert option in script
    assert "min-port=$$TURN_MIN_PORT" in script and "max-port=$$TURN_MAX_PORT" in script
    assert int(with_defaults(env["TURN_MIN_PORT"])) < int(with_defaults(env["TURN_MAX_PORT"]))
    # Nothing inside the network is reachable through a relay.
    assert "denied-peer-ip=10.0.0.0-10.255.255.255" in script
    assert "denied-peer-ip=192.168.0.0-192.168.255.255" in script
    # The secret is not on turnserver's command line (visible to every local user).
    assert "exec turnserver -c " in script and "--static-auth-secret" not in script


def test_compose_caddy_terminates_tls_in_front_of_every_node() -> None:
    caddy = compose()["services"]["caddy"]
    assert any(v.startswith("./config/Caddyfile:/etc/caddy/Caddyfile") for v in caddy["volumes"])
    assert any(volume.endswith(":/data") for volume in caddy["volumes"])  # certificates
    caddyfile = (REPO_ROOT / "config" / "Caddyfile").read_text("utf-8")
    assert "{$DRAGOMAN_DOMAIN" in caddyfile
    upstreams = re.search(r"reverse_proxy ([^{]+)\{", caddyfile)
    assert upstreams is not None
    ports = {f"127.0.0.1:{node['environment']['DRAGOMAN_PORT']}" for node in nodes()}
    assert set(upstreams.group(1).split()) == ports
    assert "health_uri /healthz" in caddyfile
    # Any node serves any page: newcomers go to the least loaded one.
    assert "lb_policy least_conn" in caddyfile
