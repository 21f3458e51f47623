"""Installing the peer of `bench peers`: lucidrains' `nuwa-pytorch` 0.7.8, in its own directory.

The peer is installed once, on demand, into `.peers/nuwa-pytorch-0.7.8/` in the checkout (pip
`--target`, never into the venv), with the few packages `import nuwa_pytorch` needs beyond ours,
pinned. A marker written after a verified install (the pinned distributions present, the import
working in a fresh interpreter) marks it usable; a half-finished install is redone. The directory
is put first on `sys.path` only while the peer is imported (`peer_on_path`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

PEER = "nuwa-pytorch==0.7.8"
# what `import nuwa_pytorch` needs beyond our venv (torch, torchvision, einops, pillow, tqdm,
# numpy, packaging, wcwidth), at versions whose own needs our venv already meets
PEER_DEPS = (
    "unfoldNd==0.2.3",  # Sparse3DNA's unfold
    "vector-quantize-pytorch==0.10.15",  # imported by its VQGAN; needs only einops and torch
    "ftfy==6.3.1",  # its tokenizer, imported by its trainer
    "regex==2024.11.6",  # idem
)
REQUIREMENTS = (PEER, *PEER_DEPS)
PEER_DIR = Path(__file__).resolve().parents[3] / ".peers" / "nuwa-pytorch-0.7.8"
MARKER = ".installed.json"


def install_command(target: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "install", "--target", str(target), "--no-deps",
            *REQUIREMENTS]  # fmt: skip


def is_installed(target: Path) -> bool:
    """Whether `target` holds a verified install of exactly these pins (its marker says so)."""
    try:
        marker = json.loads((target / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("requirements") == list(REQUIREMENTS)


def missing_distributions(target: Path) -> list[str]:
    """The pinned requirements without their `name-version.dist-info` in `target`."""

    def key(requirement: str) -> str:  # "unfoldNd==0.2.3" and "unfoldNd-0.2.3.dist-info" alike
        name, version = requirement.removesuffix(".dist-info").replace("==", "-", 1).rsplit("-", 1)
        return f"{name.lower().replace('-', '_')}-{version}"

    present = {key(p.name) for p in target.glob("*.dist-info")} if target.is_dir() else set()
    return [r for r in REQUIREMENTS if key(r) not in present]


def install_problem(target: Path, run: Callable = subprocess.run) -> str:
    """Empty when `target` is a working install of the pins, else what is wrong with it."""
    missing = missing_distributions(target)
    if missing:
        return f"{', '.join(missing)} missing from {target}"
    env = {**os.environ, "PYTHONPATH": str(target)}
    check = run([sys.executable, "-c", "import nuwa_pytorch"], capture_output=True, text=True,
                env=env, cwd=str(target))  # fmt: skip
    if check.returncode != 0:
        return f"`import nuwa_pytorch` fails: {_last_line(check.stderr)}"
    return ""


def install_failure(target: Path, problem: str) -> str:
    by_hand = f"rm -rf {shlex.quote(str(target))} && {shlex.join(install_command(target))}"
    return (
        f"bench peers could not install {PEER}: {problem}.\n"
        f"The bench installs it once into {target} (not into the venv) and needs PyPI for that. "
        f"Check the network (or pip's index settings) and run the bench again, or install it by "
        f"hand:\n  {by_hand}\nthen run the bench again: it checks that directory and reuses it."
    )


def ensure_peer(target: Path = PEER_DIR, run: Callable = subprocess.run) -> Path:
    """Install the peer into `target` unless a verified install is there; SystemExit if pip fails.

    pip writes into a sibling `.partial` directory that replaces `target` only once verified, so
    an interrupted install never looks finished. An install made by hand is verified and kept.
    """
    if is_installed(target):
        return target
    if target.is_dir() and not install_problem(target, run):
        _write_marker(target)
        return target
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    command = install_command(staging)
    print(f"installing {PEER} into {target} (once): {shlex.join(command)}", flush=True)
    try:
        done = run(command, capture_output=True, text=True)
    except OSError as error:
        raise SystemExit(install_failure(target, f"pip did not start ({error})")) from error
    if done.returncode != 0:
        problem = f"pip exited with status {done.returncode}: {_pip_reason(done.stderr)}"
        raise SystemExit(install_failure(target, problem))
    problem = install_problem(staging, run)
    if problem:
        raise SystemExit(install_failure(target, problem))
    _write_marker(staging)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def _write_marker(target: Path) -> None:
    (target / MARKER).write_text(json.dumps({"requirements": list(REQUIREMENTS)}, indent=1))


def _pip_reason(stderr: str) -> str:
    """pip's ERROR lines, and a plain word when they mean that no index answered."""
    errors = [line.strip() for line in (stderr or "").splitlines() if line.startswith("ERROR")]
    reason = "; ".join(errors)[:400] or _last_line(stderr)
    unreachable = "from versions: none" in reason or "connection" in (stderr or "").lower()
    return reason + (" (PyPI looks unreachable: offline, or a proxy or index setting)"
                     if unreachable else "")  # fmt: skip


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no message)"


@contextlib.contextmanager
def peer_on_path(target: Path):
    """`target` first on sys.path for the block (the peer's import), removed afterwards."""
    sys.path.insert(0, str(target))
    try:
        with warnings.catch_warnings():  # vector-quantize-pytorch's deprecated autocast decorator
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        sys.path.remove(str(target))
