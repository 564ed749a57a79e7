"""The Containerfile's promises that can be checked without building it.

The real build and run is ``scripts/container-smoke.sh`` (buildah, run by CI as root); these
tests keep the file's shape honest on any machine, and run the image's health check command
against a real gateway started through the CLI.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONTAINERFILE = ROOT / "Containerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each build stage (after its FROM)."""
    result: list[list[tuple[str, str]]] = []
    for word, rest in instructions():
        if word == "FROM":
            result.append([])
        elif result:
            result[-1].append((word, rest))
    return result


def runtime() -> dict[str, list[str]]:
    """The last stage's instructions by name."""
    found: dict[str, list[str]] = {}
    for word, rest in stages()[-1]:
        found.setdefault(word, []).append(rest)
    return found


def healthcheck_argv() -> list[str]:
    """The exec-form command of the image's HEALTHCHECK."""
    (spec,) = runtime()["HEALTHCHECK"]
    argv = json.loads(spec[spec.index("CMD") + 3:].strip())
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
    return argv


def test_the_base_image_is_a_build_argument_defaulting_to_official_slim_python() -> None:
    before_first_from = []
    for word, rest in instructions():
        if word == "FROM":
            break
        before_first_from.append((word, rest))
    assert ("ARG", "BASE=python:3.11-slim") in before_first_from
    froms = [rest for word, rest in instructions() if word == "FROM"]
    assert len(froms) == 2
    assert all(f.startswith("${BASE} AS ") for f in froms)


def test_the_runtime_stage_takes_only_the_built_environment() -> None:
    stage = runtime()
    assert stage["COPY"] == ["--from=builder /opt/callgate /opt/callgate"]
    text = " ".join(" ".join(v) for v in stage.values())
    for word in ("apt-get", "gcc", "build-essential", "pip install", "tests"):
        assert word not in text


def test_the_builder_makes_wheels_of_the_core_and_every_built_in_plugin() -> None:
    builder = " ".join(rest for _, rest in stages()[0])
    assert "pip wheel" in builder and " . plugins/*/" in builder
    assert "--only-binary=:all:" in builder  # no compiler needed for the dependencies
    assert all((p / "setup.cfg").exists() for p in (ROOT / "plugins").iterdir() if p.is_dir())


def test_the_runtime_runs_unprivileged_with_data_in_a_volume_and_listens_on_8080() -> None:
    stage = runtime()
    assert stage["USER"] == ["callgate"]
    assert stage["VOLUME"] == ['["/data"]']
    env = " ".join(stage["ENV"])
    assert "GATEWAY_LISTEN=0.0.0.0:8080" in env
    assert "GATEWAY_DATABASE=/data/gateway.db" in env
    assert stage["EXPOSE"] == ["8080"]
    assert stage["ENTRYPOINT"] == ['["gateway"]'] and stage["CMD"] == ['["serve"]']


def test_the_build_context_leaves_out_tests_and_local_state() -> None:
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"  # everything out, then only what the wheels are built from
    assert {line[1:] for line in lines if line.startswith("!")} == {
        "pyproject.toml", "setup.cfg", "README.md", "gateway/", "plugins/"}
    assert "plugins/*/tests" in lines


def test_the_smoke_script_is_valid_bash() -> None:
    script = ROOT / "scripts" / "container-smoke.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthcheck(listen: str) -> int:
    argv = healthcheck_argv()
    assert argv[0] == "python3"  # the image has no curl; the venv's python3 is on PATH
    env = {**os.environ, "GATEWAY_LISTEN": listen}
    return subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True,
                          timeout=30).returncode


def test_the_health_check_fails_when_nothing_listens() -> None:
    assert _healthcheck(f"0.0.0.0:{_free_port()}") != 0


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[str]:
    """A real gateway started with `gateway serve` on a wildcard address, as in the image."""
    port = _free_port()
    key = subprocess.run([sys.executable, "-m", "gateway", "keys", "generate"], check=True,
                         capture_output=True, text=True).stdout.strip()
    env = {**os.environ, "GATEWAY_MASTER_KEY": key, "GATEWAY_LISTEN": f"0.0.0.0:{port}",
           "GATEWAY_DATABASE": str(tmp_path / "gateway.db"), "GATEWAY_LOG_LEVEL": "ERROR"}
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # the one start-up line, written once it listens
        assert "gateway listening on" in line, line
        yield env["GATEWAY_LISTEN"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_health_check_passes_against_a_serving_gateway(serving: str) -> None:
    assert _healthcheck(serving) == 0
