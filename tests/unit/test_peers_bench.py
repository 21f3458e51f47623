"""`bench peers`, its pure parts: installing the peer, the window translation, ratios and targets.

Nothing here installs the peer, touches the network or times anything: pip and the import check
are replaced by fakes that create (or fail to create) what a real install leaves behind.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from nuwa_lab.attention import dense_mask
from nuwa_lab.lab.bench import TARGETS
from nuwa_lab.lab.bench.peer_install import (
    MARKER,
    REQUIREMENTS,
    ensure_peer,
    install_command,
    is_installed,
    missing_distributions,
)
from nuwa_lab.lab.bench.peer_windows import max_keys, peer_extent, peer_window_mask
from nuwa_lab.lab.bench.peers import add_ratios, targets


def _dist_info(requirement: str) -> str:
    name, version = requirement.split("==")
    return f"{name.replace('-', '_')}-{version}.dist-info"


def _fake_run(leave_out: str | None = None, import_ok: bool = True, calls: list | None = None):
    """A stand-in for subprocess.run: pip "installs" dist-infos, the import check passes or not."""

    def run(command, **kwargs):
        if calls is not None:
            calls.append(command)
        if "pip" in command:
            target = Path(command[command.index("--target") + 1])
            for requirement in REQUIREMENTS:
                if requirement != leave_out:
                    (target / _dist_info(requirement)).mkdir(parents=True)
            return subprocess.CompletedProcess(command, 0, "", "")
        stderr = "" if import_ok else "ModuleNotFoundError: No module named 'unfoldNd'"
        return subprocess.CompletedProcess(command, 0 if import_ok else 1, "", stderr)

    return run


def test_a_half_install_is_not_taken_as_installed(tmp_path: Path) -> None:
    target = tmp_path / "peer"
    assert not is_installed(target)
    for requirement in REQUIREMENTS[:2]:  # pip stopped half-way
        (target / _dist_info(requirement)).mkdir(parents=True)
    assert not is_installed(target)
    assert missing_distributions(target) == list(REQUIREMENTS[2:])
    (target / MARKER).write_text('{"requirements": ["nuwa-pytorch==0.7.7"]}')  # other pins
    assert not is_installed(target)
    (target / MARKER).write_text("{not json")
    assert not is_installed(target)


def test_an_install_is_verified_marked_and_then_reused(tmp_path: Path) -> None:
    target, calls = tmp_path / "peer", []
    assert ensure_peer(target, run=_fake_run(calls=calls)) == target
    assert is_installed(target) and missing_distributions(target) == []
    assert not target.with_name("peer.partial").exists()
    assert any("pip" in c for c in calls) and any("import nuwa_pytorch" in c for c in calls)

    def must_not_run(command, **kwargs):
        raise AssertionError(f"a marked install ran {command}")

    assert ensure_peer(target, run=must_not_run) == target


def test_pip_failure_stops_with_the_problem_and_the_command_to_run_by_hand(tmp_path: Path) -> None:
    target = tmp_path / "peer"

    def offline(command, **kwargs):  # what pip prints when no index answers
        stderr = (
            "Looking in indexes: https://pypi.org/simple\n"
            "ERROR: Could not find a version that satisfies the requirement nuwa-pytorch==0.7.8 "
            "(from versions: none)\n"
            "ERROR: No matching distribution found for nuwa-pytorch==0.7.8\n"
        )
        return subprocess.CompletedProcess(command, 1, "", stderr)

    with pytest.raises(SystemExit) as stop:
        ensure_peer(target, run=offline)
    message = str(stop.value)
    assert "pip exited with status 1" in message
    assert "No matching distribution found" in message and "unreachable" in message
    assert " ".join(install_command(target)[1:]) in message  # the command, aimed at the target
    assert not target.exists() and not is_installed(target)

    def no_pip(command, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", command[0])

    with pytest.raises(SystemExit, match="pip did not start"):
        ensure_peer(target, run=no_pip)


@pytest.mark.parametrize("leave_out, import_ok", [("unfoldNd==0.2.3", True), (None, False)])
def test_a_broken_install_is_refused_and_not_marked(tmp_path, leave_out, import_ok) -> None:
    target = tmp_path / "peer"
    with pytest.raises(SystemExit, match="unfoldNd"):
        ensure_peer(target, run=_fake_run(leave_out=leave_out, import_ok=import_ok))
    assert not is_installed(target)
    assert not is_installed(target.with_name("peer.partial"))


def test_an_install_made_by_hand_is_verified_and_kept(tmp_path: Path) -> None:
    target, calls = tmp_path / "peer", []
    for requirement in REQUIREMENTS:
        (target / _dist_info(requirement)).mkdir(parents=True)
    assert ensure_peer(target, run=_fake_run(calls=calls)) == target
    assert is_installed(target)
    assert not any("pip" in c for c in calls)  # only the import check ran


@pytest.mark.parametrize(
    "kernel, grid", [((3, 7, 7), (3, 8, 8)), ((3, 3, 3), (4, 5, 5)), ((1, 3, 5), (2, 3, 6))]
)
def test_the_peer_kernel_is_our_quadrant_extent(kernel, grid) -> None:
    extent = peer_extent(kernel)
    ours = dense_mask("nearby", grid, None, True, extent=extent, causal_rule="quadrant")
    assert torch.equal(peer_window_mask(kernel, grid), ours)


def test_the_same_box_is_not_the_same_keys() -> None:
    grid = (3, 16, 16)
    peer = peer_window_mask((3, 7, 7), grid)
    ours = dense_mask("nearby", grid, None, True, extent=(1, 3, 3))
    query = (2 * 16 + 8) * 16 + 8  # frame 2, row 8, col 8: far from the borders
    two_back, right_above = (0 * 16 + 8) * 16 + 8, (2 * 16 + 7) * 16 + 9
    assert peer[query, two_back] and not ours[query, two_back]  # the peer looks back 2 frames
    assert ours[query, right_above] and not peer[query, right_above]  # ours also up-right
    assert int(ours.sum(1).max()) == max_keys((1, 3, 3), "raster") == 74
    assert int(peer.sum(1).max()) == max_keys((2, 6, 6), "quadrant") == 147
    with pytest.raises(ValueError, match="odd"):
        peer_extent((3, 6, 6))


def _row(side, grid, fwd_ms, fwdbwd_ms, comparison="box 3x7x7", mb=10.0):
    return {"comparison": comparison, "side": side, "grid": list(grid), "fwd_ms": fwd_ms,
            "fwdbwd_ms": fwdbwd_ms, "fwd_mb": mb, "fwdbwd_mb": mb}  # fmt: skip


def test_ratios_are_over_ours_and_targets_are_judged_per_grid() -> None:
    rows = add_ratios([
        _row("ours", (8, 16, 16), 2.0, 10.0), _row("peer", (8, 16, 16), 30.0, 80.0, mb=40.0),
        _row("flex", (8, 16, 16), 1.0, None),
        _row("ours", (16, 32, 32), 4.0, 20.0), _row("peer", (16, 32, 32), 20.0, 120.0),
        _row("flex", (16, 32, 32), 8.0, None),
        _row("ours", (8, 16, 16), 1.0, 1.0, comparison="keys 3x7x7"),
        _row("peer", (8, 16, 16), 30.0, 80.0, comparison="keys 3x7x7"),
    ])  # fmt: skip
    peer = rows[1]
    assert (peer["x_fwd"], peer["x_fwdbwd"], peer["x_mb"]) == (15.0, 8.0, 4.0)
    assert rows[2]["x_fwd"] == 0.5 and "x_fwdbwd" not in rows[2]
    assert rows[7]["x_fwdbwd"] == 80.0  # over its own comparison's ours
    goals = {t["target"]: (t["value"], t["met"]) for t in targets(rows)}
    assert goals == {
        "ours >= 7x faster than the peer, fwd+bwd, 8x16x16": (8.0, True),
        "ours >= 7x faster than the peer, fwd+bwd, 16x32x32": (6.0, False),
        "ours faster than compiled FlexAttention, fwd (flex is forward-only here), 8x16x16": (
            0.5,
            False,
        ),
        "ours faster than compiled FlexAttention, fwd (flex is forward-only here), 16x32x32": (
            2.0,
            True,
        ),
    }


def test_peers_is_a_bench_target() -> None:
    from nuwa_lab.__main__ import build_parser

    assert TARGETS["peers"] == "nuwa_lab.lab.bench.peers:run"
    args = build_parser().parse_args(["bench", "peers", "--quick"])
    assert (args.target, args.quick) == ("peers", True)
