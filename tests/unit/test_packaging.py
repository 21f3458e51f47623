"""pyproject.toml and environment.yml list the same packages; the CLI lists its commands."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    return re.split(r"[=<>!~\[ ]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_and_pyproject_agree() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {r.strip() for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {p.strip() for p in pip if not p.startswith("-e")}
    assert listed == wanted, f"only one side lists: {listed ^ wanted}"
    python = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert python == ["python=3.11"]
    assert "-e .[dev]" in pip


def test_torch_pins_are_exact() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch==2.14.1" in deps and "torchvision==0.29.1" in deps


def test_cli_help_lists_commands() -> None:
    from nuwa_lab.__main__ import COMMANDS

    out = subprocess.run(
        [sys.executable, "-m", "nuwa_lab", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in COMMANDS:
        assert name in out


def test_importing_the_package_prints_nothing() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import nuwa_lab, nuwa_lab.config, nuwa_lab.lab.experiment"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == "" and out.stderr == ""


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make lab" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_the_library_carries_no_history():
    """Sessions, issues and people belong in docs/lab-notes.md, not in code a student reads."""
    history = re.compile(r"\b(session \d+|issue #\d+|engineer [A-Z]\b)", re.IGNORECASE)
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in sorted((ROOT / "nuwa_lab").rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if history.search(line)
    ]
    assert not found, "\n".join(found)
