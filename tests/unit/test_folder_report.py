"""The digits' targets table: each verdict on a case with a known answer."""

from __future__ import annotations

from nuwa_lab.tasks.folder_report import FOLDER_TARGETS, flat_metrics, folder_targets_table, shown


def _row(table: str, measure: str) -> str:
    (line,) = [line for line in table.splitlines() if line.startswith(f"| {measure} |")]
    return line


def _all_measured() -> dict[str, float]:
    """One run's flat metrics: each target with its value and 95% interval."""
    return flat_metrics(
        {
            "recon": {
                **{"psnr_db": 36.5, "psnr_db_low": 36.4, "psnr_db_high": 36.6},
                # 97% meets 95%, but its interval reaches below it
                **{"acc_class_recon": 0.97, "acc_class_recon_low": 0.94},
            },
            "t2i": {"acc_class": 0.79, "acc_class_low": 0.70, "acc_class_high": 0.86},
            "t2v": {"acc_all": 0.81, "acc_all_low": 0.70, "acc_all_high": 0.89},
            "notebook": {"minutes": 13.9},
        }
    )


def test_each_target_gets_the_verdict_its_value_and_interval_give() -> None:
    table, met = folder_targets_table(_all_measured(), preset="tiny")
    assert "met, interval clear" in _row(table, "tokenizer: reconstruction PSNR, test scans")
    assert _row(table, "probe reads the reconstructions right").endswith("| met |")
    assert "not met" in _row(table, "T2I: the probe reads the asked digit")
    # a lower bound on the target clears it (81.0% [70.0, 89.0] against 70%)
    assert _row(table, "T2V: digit and direction right").endswith("| met, interval clear |")
    assert _row(table, "the notebook's wall time").endswith("| met |")  # no interval on a time
    assert met == {
        "target_recon_psnr_db": True,
        "target_recon_acc_class_recon": True,
        "target_t2i_acc_class": False,
        "target_t2v_acc_all": True,
        "target_notebook_minutes": True,
    }
    assert len(met) == len(FOLDER_TARGETS)


def test_a_run_that_loaded_cached_artifacts_is_not_judged_on_its_time() -> None:
    table, met = folder_targets_table(
        _all_measured() | {"notebook_minutes": 1.2}, preset="tiny", cached=["vqgan", "nuwa"]
    )
    row = _row(table, "the notebook's wall time")
    assert "not judged: vqgan, nuwa loaded from the cache" in row
    assert "target_notebook_minutes" not in met
    assert met["target_t2v_acc_all"]  # the other targets are judged as before


def test_too_slow_unmeasured_and_other_presets() -> None:
    flat = _all_measured() | {"notebook_minutes": 26.0}
    del flat["t2v_acc_all"]
    table, met = folder_targets_table(flat, preset="tiny")
    assert "not met" in _row(table, "the notebook's wall time")
    assert "not measured" in _row(table, "T2V: digit and direction right")
    assert "target_t2v_acc_all" not in met
    table, _ = folder_targets_table(flat, preset="smoke")
    assert "the targets are for tiny" in _row(table, "tokenizer: reconstruction PSNR, test scans")


def test_shown_writes_rates_as_percentages_with_their_interval() -> None:
    flat = {"t2i_acc_class": 0.828125, "t2i_acc_class_low": 0.7179, "t2i_acc_class_high": 0.9012}
    assert shown(flat, "t2i_acc_class") == "82.8% [71.8, 90.1]"
    assert shown({"x_psnr_db": 36.47}, "x_psnr_db") == "36.47"
    assert shown({}, "missing") == "–"
