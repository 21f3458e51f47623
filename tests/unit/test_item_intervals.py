"""Per-item values of the tasks' means and their bootstrap intervals, on known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nuwa_lab.metrics.accuracy import pixel_accuracy
from nuwa_lab.tasks.item_intervals import item_intervals, item_values
from nuwa_lab.tasks.metrics import (
    PSNR_CAP_DB,
    mean_psnr_db,
    outside_edit_parts,
    region_psnr,
    token_pixels,
)


def test_a_perfect_sketch_reading_has_accuracy_one_and_no_width() -> None:
    sketch = torch.randint(0, 3, (6, 8, 8))
    out = item_intervals(item_values("s2i", {"sketch": sketch}, None, segmentation=sketch))
    assert out["pixel_accuracy"] == out["pixel_accuracy_low"] == out["pixel_accuracy_high"] == 1
    assert out["foreground_accuracy_low"] == 1.0


def test_pooled_pixel_accuracy_equals_the_metric_and_its_interval_covers_it() -> None:
    g = torch.Generator().manual_seed(0)
    sketch = torch.randint(0, 3, (40, 2, 8, 8), generator=g)
    pred = torch.where(torch.rand(sketch.shape, generator=g) < 0.7, sketch, 0)
    out = item_intervals(item_values("s2v", {"sketch": sketch}, None, segmentation=pred))
    assert out["pixel_accuracy"] == pytest.approx(pixel_accuracy(pred, sketch))
    fg = pixel_accuracy(pred, sketch, ignore_background=True)
    assert out["foreground_accuracy"] == pytest.approx(fg)
    assert out["foreground_accuracy_low"] < fg < out["foreground_accuracy_high"]
    assert out["foreground_accuracy_high"] - out["foreground_accuracy_low"] < 0.1


def test_half_perfect_half_blank_items_give_an_interval_around_one_half() -> None:
    sketch = torch.ones(100, 4, 4, dtype=torch.long)
    pred = sketch.clone()
    pred[50:] = 0  # half of the items read as blank
    out = item_intervals(item_values("s2i", {"sketch": sketch}, None, segmentation=pred))
    assert out["foreground_accuracy"] == 0.5
    # the percentile bootstrap of a proportion of 50 in 100 items: about 0.40-0.60
    assert out["foreground_accuracy_low"] == pytest.approx(0.40, abs=0.02)
    assert out["foreground_accuracy_high"] == pytest.approx(0.60, abs=0.02)


def test_identical_completions_sit_at_the_psnr_cap() -> None:
    x = torch.rand(5, 3, 8, 8)
    out = item_intervals(item_values("i2i", {"pixels": x}, x.clone()))
    assert out["psnr_db"] == pytest.approx(PSNR_CAP_DB)
    assert out["psnr_db_low"] == pytest.approx(PSNR_CAP_DB)


def test_preservation_gap_is_the_tokenizers_psnr_minus_ours_per_item() -> None:
    g = torch.Generator().manual_seed(1)
    source = torch.rand(30, 3, 8, 8, generator=g)
    edit = torch.zeros(30, 8, 8, dtype=torch.bool)
    edit[:, :4] = True
    recon = (source + 0.01 * torch.randn(source.shape, generator=g)).clamp(0, 1)
    ours = (source + 0.05 * torch.randn(source.shape, generator=g)).clamp(0, 1)
    inputs = {"pixels": source, "edit_region": edit}
    out = item_intervals(item_values("ti2i", inputs, ours, reconstruction=recon))
    kept = mean_psnr_db(region_psnr(recon, source, ~edit))
    mine = mean_psnr_db(region_psnr(ours, source, ~edit))
    assert out["preservation_gap_db"] == pytest.approx(kept - mine, abs=1e-4)
    assert out["psnr_preserved_db"] == pytest.approx(mine, abs=1e-4)
    assert 0 < out["preservation_gap_db_low"] < kept - mine < out["preservation_gap_db_high"]
    same = item_intervals(item_values("ti2i", inputs, recon, reconstruction=recon))
    assert same["preservation_gap_db_low"] == same["preservation_gap_db_high"] == 0


def test_the_outside_of_an_edit_splits_into_given_tokens_and_redrawn_pixels() -> None:
    # 8x8 pixels, 4x4 patches: an edit of one pixel in the top-left patch leaves three tokens
    # given (48 pixels) and 15 pixels that share the edited token and are redrawn
    edit = torch.zeros(1, 8, 8, dtype=torch.bool)
    edit[0, 1, 2] = True
    fixed = torch.tensor([[[False, True], [True, True]]])
    parts = outside_edit_parts(edit, fixed)
    assert int(parts["given"].sum()) == 48 and int(parts["redrawn"].sum()) == 15
    assert not (parts["given"] & parts["redrawn"]).any()
    assert torch.equal(parts["given"] | parts["redrawn"], ~edit)
    assert torch.equal(token_pixels(fixed, (8, 8))[0, :4, 4:], torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="does not tile"):
        token_pixels(fixed, (8, 6))
    # an output wrong only where it redraws: the given part is perfect, the redrawn part is not
    g = torch.Generator().manual_seed(3)
    source = torch.rand(20, 3, 8, 8, generator=g)
    edit, fixed = edit.expand(20, 8, 8), fixed.expand(20, 2, 2)
    ours = torch.where(outside_edit_parts(edit, fixed)["redrawn"][:, None], 1 - source, source)
    out = item_intervals(
        item_values("ti2i", {"pixels": source, "edit_region": edit}, ours, reconstruction=source,
                    fixed=fixed)
    )  # fmt: skip
    assert out["given_gap_db"] == 0 and out["redrawn_gap_db"] > 20


def test_v2v_gain_over_copy_last_is_positive_for_the_truth_and_zero_for_copying() -> None:
    g = torch.Generator().manual_seed(2)
    truth = torch.rand(8, 4, 3, 8, 8, generator=g)
    inputs = {"pixels": truth, "given_frames": 1}
    perfect = item_intervals(item_values("v2v", inputs, truth.clone()))
    assert perfect["psnr_gain_from_frame2_db_low"] > 0
    copy = truth[:, :1].expand_as(truth).clone()
    copied = item_intervals(item_values("v2v", inputs, copy))
    assert copied["psnr_gain_from_frame2_db"] == pytest.approx(0.0)


def test_items_without_a_value_are_left_out_and_too_few_items_give_nothing() -> None:
    values = {"m": (np.array([1.0, np.nan, 3.0]), lambda a: float(a.mean()))}
    out = item_intervals(values)
    assert out["m"] == 2.0 and out["m_low"] >= 1.0 and out["m_high"] <= 3.0
    assert item_intervals({"m": (np.array([1.0]), lambda a: float(a.mean()))}) == {}
