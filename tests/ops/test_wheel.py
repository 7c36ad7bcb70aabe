"""The built wheel, installed into a fresh virtual environment outside the checkout, is a
working ledger: --version, db init, demo, serve."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import httpx

from tests.api.test_serve import free_port
from tests.ops.conftest import wait_for_health

CHECKOUT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
PACKAGES = [p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]]


def run(*args: str | Path, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=300, check=False, **kwargs
    )
    assert result.returncode == 0, (args, result.stdout[-3000:], result.stderr[-3000:])
    return result


def package_files(root: Path) -> set[str]:
    """Every file the packages hold in the checkout (code and data), as wheel paths."""
    return {
        path.relative_to(root).as_posix()
        for package in PACKAGES
        for path in (root / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def build_wheel(tmp_path: Path) -> Path:
    """`pip wheel` from a copy of the checkout, so the build leaves nothing in the checkout."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(CHECKOUT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(
            CHECKOUT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    wheels = tmp_path / "wheels"
    # Verbose, so that the build backend's warnings about our pyproject.toml are seen.
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", wheels, source)
    warned = [
        line.strip()
        for line in (built.stdout + built.stderr).splitlines()
        if "Warning" in line and "`project." in line
    ]
    assert not warned, f"the build warns about pyproject.toml: {warned}"
    (wheel,) = wheels.glob("*.whl")
    assert wheel.name == f"income_ledger-{VERSION}-py3-none-any.whl"
    return wheel


def archive_top_level(names: set[str]) -> set[str]:
    return {name.split("/", 1)[0] for name in names}


def fresh_venv(tmp_path: Path, wheel: Path) -> Path:
    """A new virtual environment with the wheel installed, seeing this environment's
    installed dependencies (nothing is downloaded) but not the checkout."""
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--quiet", wheel)
    # Only after the install: pip must not see this environment's income-ledger (an editable
    # install of a checkout) and think the wheel already installed. A path in a .pth file is
    # added to sys.path as it is; the .pth files in it (that editable install) are not run.
    site_packages = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    dependencies = sysconfig.get_paths()["purelib"]
    (Path(site_packages.stdout.strip()) / "dependencies.pth").write_text(dependencies + "\n")
    return venv


def test_every_top_level_package_of_the_checkout_is_packaged() -> None:
    """A new top-level package left out of pyproject's list would be missing from the wheel
    (and so from the container image) while every test in the checkout passed."""
    top_level = {init.parent.name for init in CHECKOUT.glob("*/__init__.py")} - {"tests", "bench"}
    assert top_level == set(PACKAGES)


def test_the_wheel_installs_and_runs_outside_the_checkout(tmp_path) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
    top_level = archive_top_level(in_wheel)
    assert top_level == {*PACKAGES, f"income_ledger-{VERSION}.dist-info"}, top_level
    assert {"web/templates/exceptions.html", "web/static/ledger.css"} <= in_wheel
    missing = package_files(CHECKOUT) - in_wheel
    assert not missing, f"files the packages load at run time are not in the wheel: {missing}"
    assert f"income_ledger-{VERSION}.dist-info/entry_points.txt" in in_wheel

    venv = fresh_venv(tmp_path, wheel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("LEDGER_")}
    env["LEDGER_DATABASE_URL"] = f"sqlite:///{elsewhere / 'ledger.db'}"
    ledger_cli = venv / "bin" / "income-ledger"

    imported = run(
        venv / "bin" / "python",
        "-c",
        "import api, income_ledger; print(api.__file__, income_ledger.__file__)",
        cwd=elsewhere,
        env=env,
    )
    assert all(Path(p).is_relative_to(venv) for p in imported.stdout.split()), imported.stdout
    assert run(ledger_cli, "--version", cwd=elsewhere, env=env).stdout.strip() == (
        f"income-ledger {VERSION}"
    )
    run(ledger_cli, "db", "init", cwd=elsewhere, env=env)
    demo = run(
        ledger_cli, "demo", "--days", "1", "--receipts-per-day", "20", cwd=elsewhere, env=env
    )
    assert "CT" in demo.stdout

    port = free_port()
    server = subprocess.Popen(
        [ledger_cli, "serve", "--port", str(port), "--demo-keys"],
        cwd=elsewhere,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_health(base)
        health = httpx.get(f"{base}/health", timeout=30).json()
        assert health["status"] == "ok" and health["event_position"] > 0
        assert httpx.get(f"{base}/openapi.json", timeout=30).json()["info"]["version"] == VERSION
    finally:
        server.terminate()
        server.wait(timeout=30)
