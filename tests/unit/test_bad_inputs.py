"""Bad inputs give a clear error that names what is wrong: config values, sampler and attention
arguments, sweep files. Each case asserts that the message names the offending key, argument or
file (and, for sweep files, the line)."""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
from pathlib import Path

import nbformat
import pytest
import torch

from nuwa_lab import config as config_module
from nuwa_lab.attention import attend, dense_mask
from nuwa_lab.config import PRESETS, check_config, make_config
from nuwa_lab.lab.experiment import cli as sweep_command
from nuwa_lab.lab.experiment.sweep import SweepFileError, load_sweep
from nuwa_lab.model import Condition, Nuwa
from nuwa_lab.model.sample import sample

ROOT = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------------------------------- config

# (overrides on top of smoke, a regex the message must match: the dotted key, the value, the rule)
BAD_CONFIGS = [
    ({"model.dim": "abc"}, r"^model\.dim = 'abc': must be a positive int$"),
    ({"model.dim": 0}, r"^model\.dim = 0: must be a positive int$"),
    ({"model.dec_layers": -1}, r"^model\.dec_layers = -1: must be a positive int$"),
    ({"train.steps": -5}, r"^train\.steps = -5: must be a positive int$"),
    ({"sample.temperature": "hot"}, r"^sample\.temperature = 'hot': must be a non-negative"),
    ({"train.lr": "1e-3"}, r"^train\.lr = '1e-3': must be a positive number$"),
    ({"train.lr": math.nan}, r"^train\.lr = nan: must be a positive number \(nan and inf"),
    ({"model.dim": True}, r"^model\.dim = True: must be a positive int"),  # a bool is not an int
    ({"model.dim": 32.0}, r"^model\.dim = 32\.0: must be a positive int"),
    ({"train.amp": 1}, r"^train\.amp = 1: must be a bool$"),
    ({"model.heads": 3}, r"^model\.dim = 32: must be divisible by model\.heads = 3"),
    ({"world.image_size": 18}, r"^world\.image_size = 18: .*divisible by tokenizer\.downsample"),
    ({"world.image_size": 8}, r"^world\.image_size = 8: must be an int >= 12$"),
    ({"model.attention": "nearbyy"}, r"^model\.attention = 'nearbyy': .*full, axial, block"),
    ({"model.causal_rule": "diagonal"}, r"^model\.causal_rule = 'diagonal': .*raster, quadrant"),
    ({"tokenizer.kind": "vqgann"}, r"^tokenizer\.kind = 'vqgann': must be one of vqgan, vqvae"),
    ({"tokenizer.downsample": 3}, r"^tokenizer\.downsample = 3: must be a power of two"),
    ({"device": "gpu"}, r"^device = 'gpu': must be auto, cpu, cuda or cuda:N$"),
    ({"model.extent": (1, 1)}, r"^model\.extent = \(1, 1\): .*\(t, h, w\) triple of ints >= 0"),
    ({"model.block": [1, 0, 2]}, r"^model\.block = \(1, 0, 2\): .*triple of ints >= 1"),
    ({"model.dropout": 1.0}, r"^model\.dropout = 1\.0: must be a number in \[0, 1\)$"),
    ({"sample.top_p": 0}, r"^sample\.top_p = 0\.0: must be a number in \(0, 1\]$"),
    ({"sample.top_k": -1}, r"^sample\.top_k = -1: must be a non-negative int$"),
    ({"train.betas": (0.9, 1.0)}, r"^train\.betas = \(0\.9, 1\.0\): .*each in \[0, 1\)"),
    ({"sample.task_temperatures": [["t2x", 0.3]]}, r"^sample\.task_temperatures = .*'t2x'"),
    ({"tasks.finetune_budgets": [["t2i", 0, 8, 1e-3]]}, r"^tasks\.finetune_budgets = .*steps > 0"),
    ({"train.task_mix": [["t2i", 0.0]]}, r"^train\.task_mix = .*with a positive sum"),
    ({"train.task_mix": [["s2i", 1.0]]}, r"^train\.task_mix = .*bad rows: \('s2i', 1\.0\)"),
    ({"world.shapes": ("circle", "hexagon")}, r"^world\.shapes = .*unknown or repeated: 'hexagon'"),
    ({"world.held_out": (("star", "red"),)}, r"^world\.held_out = .*held-out pairs"),
    ({"tasks.given_frames": 2}, r"^tasks\.given_frames = 2: must be less than world\.frames = 2"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_CONFIGS, ids=lambda x: str(x)[:40])
def test_a_bad_config_value_names_its_key_value_and_rule(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_config("smoke", **overrides)


def test_several_bad_values_are_listed_together() -> None:
    with pytest.raises(ValueError, match=r"2 invalid config values:\n  model\.dim = 0.*\n  train"):
        make_config("smoke", **{"model.dim": 0, "train.steps": -5})


def test_a_long_bad_value_is_reported_by_length_not_echoed() -> None:
    with pytest.raises(ValueError, match=r"^world\.colours = .*characters\)") as error:
        make_config("smoke", **{"world.colours": ("x" * 10_000,)})
    assert len(str(error.value)) < 500


def test_valid_values_still_pass_and_keep_their_types() -> None:
    cfg = make_config("smoke", **{"train.lr": 1, "model.extent": [0, 1, 2], "device": "cuda:1"})
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.model.extent == (0, 1, 2) and cfg.device == "cuda:1"
    assert make_config("smoke", **{"sample.temperature": 0, "sample.top_k": 0}).sample.top_k == 0


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_passes_validation(preset: str) -> None:
    cfg = make_config(preset)
    assert check_config(cfg) is cfg


def test_every_field_has_a_rule() -> None:
    cfg = make_config("smoke")
    sections = [cfg, *(getattr(cfg, f.name) for f in dataclasses.fields(cfg))]
    sections = [s for s in sections if dataclasses.is_dataclass(s)]
    assert len(sections) == 10
    for section in sections:
        plain = [f.name for f in dataclasses.fields(section)]
        plain = [n for n in plain if not dataclasses.is_dataclass(getattr(section, n))]
        assert set(type(section).RULES) == set(plain), type(section).__name__


def test_the_names_config_checks_are_the_names_the_code_knows() -> None:
    from nuwa_lab import attention
    from nuwa_lab.recipes.pretrain import PRETRAIN_TASKS
    from nuwa_lab.recipes.tokenizers import KINDS
    from nuwa_lab.tokenizer.losses import REC_LOSSES
    from nuwa_lab.tokenizer.nets import NORMS
    from nuwa_lab.tokenizer.quantizer import INITS
    from nuwa_lab.world import TASKS
    from nuwa_lab.world.captions import SIZE_WORDS
    from nuwa_lab.world.motion import DIRECTION_VECTORS
    from nuwa_lab.world.render import PALETTE, SHAPE_NAMES
    from nuwa_lab.world.sample import REGIONS

    c = config_module
    assert c.ATTENTION_PATTERNS == attention.PATTERNS
    assert (c.CAUSAL_RULES, c.BORDERS) == (attention.CAUSAL_RULES, attention.BORDERS)
    assert set(c.ENCODER_NORMS) == set(NORMS) and c.CODEBOOK_INITS == INITS
    assert c.REC_LOSSES == REC_LOSSES and set(c.TOKENIZER_KINDS) <= set(KINDS)
    assert c.TASKS == TASKS and c.PRETRAIN_TASKS == PRETRAIN_TASKS
    assert c.SHAPES == SHAPE_NAMES and c.COLOURS == tuple(PALETTE)
    assert c.SIZES == tuple(SIZE_WORDS) and c.DIRECTIONS == tuple(DIRECTION_VECTORS)
    assert c.REGIONS == len(REGIONS)


# --------------------------------------------------------------------------------------- sampler

K = 32


@pytest.fixture(scope="module")
def model() -> Nuwa:
    torch.manual_seed(0)
    sizes = dict(text_vocab=40, codebook_size=K, sketch_codebook_size=16, text_length=12)
    return Nuwa(make_config("smoke").model, max_grid=(1, 4, 4), **sizes).eval()


def text(b: int = 2) -> Condition:
    return Condition.text(torch.randint(5, 40, (b, 6), generator=torch.Generator().manual_seed(3)))


ALL = torch.ones(4, 4, dtype=torch.bool)
BAD_SAMPLING = [
    (dict(temperature=math.nan), r"^temperature=nan: must be a finite number >= 0"),
    (dict(temperature=math.inf), r"^temperature=inf: must be a finite number >= 0"),
    (dict(temperature=-0.5), r"^temperature=-0\.5: must be a finite number >= 0"),
    (dict(temperature="hot"), r"^temperature='hot': must be a finite number"),
    (dict(top_k=-1), r"^top_k=-1: must be an int >= 0"),
    (dict(top_k=2.5), r"^top_k=2\.5: must be an int >= 0"),
    (dict(top_p=1.5), r"^top_p=1\.5: must be a number in \(0, 1\]"),
    (dict(top_p=math.nan), r"^top_p=nan: must be a number in \(0, 1\]"),
    (dict(batch_size=0), r"^batch_size=0: must be None \(all at once\) or an int >= 1"),
    (dict(candidates=0), r"^candidates=0: need an int >= 1"),
    (dict(generator="seed"), r"^generator='seed': must be None, an int seed or a torch\.Gen"),
    (dict(grid=(4, 0)), r"^grid=\(4, 0\): must be \(h, w\) for images or \(t, h, w\)"),
    (dict(grid=(4.5, 4)), r"^grid=\(4\.5, 4\): must be \(h, w\)"),
    (dict(grid=(1, 1, 4, 4)), r"^grid=\(1, 1, 4, 4\): must be \(h, w\)"),
    (dict(fixed=ALL, fixed_tokens=torch.full((4, 4), 2.5)), r"fixed_tokens .* got 2\.5"),
    (dict(fixed=ALL, fixed_tokens=torch.full((4, 4), math.nan)), r"fixed_tokens .* got nan"),
    (dict(fixed=ALL, fixed_tokens=torch.full((4, 4), K)), r"fixed_tokens must lie in \[0, 32\)"),
    (dict(fixed=ALL, fixed_tokens=torch.full((4, 4), -1)), r"fixed_tokens .* from -1 to -1"),
    (dict(fixed=ALL, fixed_tokens=ALL), r"fixed_tokens .* dtype torch\.bool .*swapped"),
    (dict(fixed=ALL.long(), fixed_tokens=ALL.long()), r"^fixed must be a bool tensor .*int64"),
    (dict(fixed=ALL[:3], fixed_tokens=torch.zeros(3, 4)), r"^fixed has shape \(3, 4\); expected"),
    (dict(fixed=ALL, fixed_tokens=torch.zeros(2, 5, 4)), r"^fixed_tokens has shape \(2, 5, 4\)"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_SAMPLING, ids=lambda x: str(x)[:40])
def test_a_bad_sampling_argument_is_named(model: Nuwa, kwargs: dict, message: str) -> None:
    kwargs = {"grid": (4, 4), **kwargs}
    with pytest.raises(ValueError, match=message):
        sample(model, text(), **kwargs)


def test_whole_float_codes_and_greedy_sampling_still_work(model: Nuwa) -> None:
    fixed = torch.zeros(4, 4, dtype=torch.bool)
    fixed[0] = True
    codes = torch.arange(16).reshape(4, 4) % K
    as_long = sample(model, text(), (4, 4), fixed, codes, temperature=0)
    as_float = sample(model, text(), (4, 4), fixed, codes.float(), temperature=0)
    assert torch.equal(as_long, as_float) and torch.equal(as_long[:, 0], codes[0].expand(2, 4))


# ------------------------------------------------------------------------------------- attention

BAD_ATTENTION = [
    (dict(q_grid=(1, 0, 4)), r"^q_grid must be a \(T, H, W\) tuple of three positive ints"),
    (dict(q_grid=(1, 2.5, 4)), r"^q_grid must be a \(T, H, W\) tuple of positive ints, got"),
    (dict(q_grid="abc"), r"^q_grid must be a \(T, H, W\) tuple of positive ints, got 'abc'"),
    (dict(q_grid=(1, True, 4)), r"^q_grid must be a \(T, H, W\) tuple of positive ints"),
    (dict(kv_grid=(4, 4)), r"^kv_grid must be a \(T, H, W\) tuple of three positive ints"),
    (dict(extent=(1, 1.5, 1)), r"^extent must be an int or a \(t, h, w\) tuple of ints >= 0"),
    (dict(extent=-1), r"^extent=-1 would leave a query with no visible key"),
    (dict(block=(0, 1, 1)), r"^block=\(0, 1, 1\) would leave a query with no visible key"),
    (dict(causal="no"), r"^causal must be True or False, got 'no'"),
    (dict(pattern="nearbyy"), r"^unknown pattern 'nearbyy'; valid: full, axial, block, nearby"),
    (dict(border="wrap"), r"^unknown border 'wrap'; valid: truncate, shift"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_ATTENTION, ids=lambda x: str(x)[:40])
def test_a_bad_attention_argument_is_named(kwargs: dict, message: str) -> None:
    kwargs = {"pattern": "nearby", "q_grid": (1, 4, 4), **kwargs}
    with pytest.raises(ValueError, match=message):
        dense_mask(**kwargs)
    q = torch.zeros(1, 1, 16, 4)
    with pytest.raises(ValueError, match=message):
        attend(q, q, q, **kwargs)


def test_integer_like_grid_sizes_are_still_accepted() -> None:
    import numpy as np

    grid = (np.int64(1), torch.tensor(2), 3)
    assert torch.equal(dense_mask("full", grid), dense_mask("full", (1, 2, 3)))


# ---------------------------------------------------------------------------------------- sweeps


def write_project(folder: Path) -> Path:
    params = nbformat.v4.new_code_cell('PRESET: str = "tiny"  # smoke, tiny\nX: int = 1\n')
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 99 · T"), params])
    (folder / "notebooks").mkdir(parents=True)
    nbformat.write(nb, folder / "notebooks" / "99_t.ipynb")
    return folder


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


GOOD = b"notebook: notebooks/99_t.ipynb\nbase: {PRESET: smoke}\n"
BAD_FILES = [
    (b"notebook: notebooks/99_t.ipynb\ngrid:\n  X: [1, 2\nbase: {}\n", 4, r"flow sequence"),
    (b"notebook: notebooks/99_t.ipynb\n- X\n", 2, r"expected <block end>"),
    (b"name: s\n# caf\xe9\n" + GOOD, 2, r"byte 0xe9 at offset 13 \(column 6\) is not UTF-8"),
    (b"notebook: a\x07\n", 1, r"unacceptable character #x0007"),
]


@pytest.mark.parametrize(
    ("data", "line", "message"), BAD_FILES, ids=["yaml", "yaml2", "utf8", "ctl"]
)
def test_an_unreadable_sweep_file_is_named_with_its_line(
    tmp_path: Path, capsys, data: bytes, line: int, message: str
) -> None:
    path = write(write_project(tmp_path) / "experiments" / "bad.yaml", data)
    with pytest.raises(SweepFileError, match=f"^{re.escape(str(path))}:{line}: .*{message}"):
        load_sweep(path)
    parser = argparse.ArgumentParser()
    sweep_command.add_arguments(parser)
    for extra in ([], ["--dry-run"], ["--table"]):
        assert sweep_command.run(parser.parse_args([str(path), *extra])) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"{path}:{line}: ") and "Traceback" not in err


def test_the_command_line_exits_2_without_a_traceback(tmp_path: Path, capsys) -> None:
    from nuwa_lab.__main__ import main  # what `python -m nuwa_lab sweep FILE` runs

    path = write(tmp_path / "bad.yaml", BAD_FILES[0][0])
    assert main(["sweep", str(path), "--dry-run"]) == 2
    assert capsys.readouterr().err.startswith(f"{path}:4: bad YAML")


def test_a_sweep_file_outside_the_checkout_uses_the_current_checkout(
    tmp_path: Path, monkeypatch
) -> None:
    project = write_project(tmp_path / "checkout")
    path = write(tmp_path / "elsewhere" / "mine.yaml", GOOD)
    monkeypatch.chdir(project / "notebooks")
    sweep = load_sweep(path)
    assert sweep.root == project.resolve()
    assert [r.notebook for r in sweep.runs()] == [(project / "notebooks" / "99_t.ipynb").resolve()]


def test_the_checkout_beside_the_sweep_file_comes_first(tmp_path: Path, monkeypatch) -> None:
    here = write_project(tmp_path / "here")
    write_project(tmp_path / "cwd")
    monkeypatch.chdir(tmp_path / "cwd")
    assert load_sweep(write(here / "experiments" / "s.yaml", GOOD)).root == here.resolve()


def test_no_checkout_anywhere_says_where_it_looked(tmp_path: Path, monkeypatch) -> None:
    path = write(tmp_path / "a" / "s.yaml", GOOD)
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "b")
    a, b = (re.escape(str((tmp_path / name).resolve())) for name in "ab")
    where = f"{a} and every folder above it and {b} and every folder above it"
    with pytest.raises(FileNotFoundError, match=f"looked for a notebooks/ folder in {where}"):
        load_sweep(path)
