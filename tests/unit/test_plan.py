"""`python -m nuwa_lab plan`: its FLOPs against torch's FLOP counter, its memory against autograd.

`torch.utils.flop_counter.FlopCounterMode` counts what the kernels of a real forward + backward
pass spend: matrix products (`aten.mm` here: every projection, the MLPs and the head) and the
attention kernels it has a formula for. It has none for the CPU flash-attention kernel that
`scaled_dot_product_attention` runs here, so one is registered below (torch's own formula for the
CUDA kernels). It does not count elementwise work (LayerNorm, softmax, GELU, the optimizer), and
neither does the plan.

- matrix products: the plan's FLOPs minus its attention term equal the counter's `aten.mm`
  exactly (forward, and a backward of twice the forward: every weight and every input needs its
  gradient, the embeddings being learned);
- attention: the plan counts the (query, key) pairs the pattern needs; at `tiny` the "auto"
  backend hands the mask to SDPA, which computes every pair of each query frame's key band, and
  torch counts its backward as 2.5x the forward (it recomputes the scores) where the plan counts 2x.
  So the counter spends more: the plan's total is within 12% below it at `tiny` (5-10% measured).
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from nuwa_lab.__main__ import main
from nuwa_lab.attention import AttentionPattern
from nuwa_lab.config import make_config
from nuwa_lab.lab.plan import activation_values, make_plan, task_grids
from nuwa_lab.model import Condition, Nuwa, model_sizes, paper_parameter_count
from nuwa_lab.model.counting import attention_pairs

aten = torch.ops.aten


def cpu_sdpa(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def cpu_sdpa_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


CPU_SDPA = {
    aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: cpu_sdpa_backward,
}


def attention_term(cfg, condition_grid, target_grid) -> int:
    """The plan's attention FLOPs of a training step: 3 x 4 d per attended pair (text: full)."""
    c = cfg.model
    common = dict(extent=c.extent, block=c.block, causal_rule=c.causal_rule, border=c.border)
    full = AttentionPattern(pattern="full", **common)
    causal = AttentionPattern(pattern=c.attention, causal=True, **common)
    pairs = c.enc_layers * attention_pairs(full, condition_grid, condition_grid) + c.dec_layers * (
        attention_pairs(causal, target_grid, target_grid)
        + attention_pairs(full, target_grid, condition_grid)
    )
    return 3 * 4 * c.dim * pairs


def task_inputs(kind, condition_grid, target_grid, codebook: int):
    g = torch.Generator().manual_seed(0)
    if kind == "text":
        condition = Condition.text(torch.randint(4, 20, (1, condition_grid[2]), generator=g))
    else:
        condition = Condition.none(1)
    return condition, torch.randint(0, codebook, (1, *target_grid), generator=g)


@pytest.fixture(scope="module")
def tiny():
    cfg = make_config("tiny")
    torch.manual_seed(0)
    return cfg, Nuwa(cfg.model, **model_sizes(cfg)).train()


@pytest.mark.parametrize("task", ["t2i", "v2v", "t2v"])
def test_plan_flops_match_torchs_flop_counter_on_a_tiny_training_step(task, tiny) -> None:
    cfg, model = tiny
    plan = make_plan("tiny")
    kind, condition_grid, target_grid = task_grids(cfg)[task]
    condition, target = task_inputs(kind, condition_grid, target_grid, model.codebook_size)
    with FlopCounterMode(display=False, custom_mapping=CPU_SDPA) as counter:
        _, loss = model(condition, target)
        loss.backward()
    model.zero_grad(set_to_none=True)
    spent = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    matmuls = spent.pop("aten.mm")
    attention = attention_term(cfg, condition_grid, target_grid)
    planned = plan.tasks[task].train_flops
    assert matmuls == planned - attention  # projections, MLPs, head: exact
    assert set(spent) == {str(op) for op in CPU_SDPA}  # everything else is attention
    assert attention <= sum(spent.values())  # the pairs needed <= the pairs computed
    assert planned <= counter.get_total_flops() <= 1.12 * planned


def saved_bytes(model: Nuwa, condition: Condition, target: torch.Tensor) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of one forward pass: parameters
    excluded, a storage shared by several saved tensors (q, k, v of one projection) counted once."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(condition, target)
    return sum(saved.values())


def test_plan_activation_memory_is_what_autograd_saves_at_tiny(tiny) -> None:
    """The formula of `nuwa_lab.lab.plan`'s docstring against what autograd keeps, in fp32."""
    cfg, model = tiny
    for task, (kind, condition_grid, target_grid) in task_grids(cfg).items():
        condition, target = task_inputs(kind, condition_grid, target_grid, model.codebook_size)
        n, m = (g[0] * g[1] * g[2] for g in (target_grid, condition_grid))
        values = activation_values(cfg, n, m, model.codebook_size, checkpointed=False)
        # measured 3-10% more: SDPA's float copy of the mask, a contiguous copy of q, k, v
        # where the heads are split, the encoder's last LayerNorm
        assert 4 * values <= saved_bytes(model, condition, target) <= 1.15 * 4 * values, task


def test_plan_prints_the_tiny_flops_per_step(capsys) -> None:
    plan = make_plan("tiny")
    assert main(["plan", "--preset", "tiny"]) == 0
    out = capsys.readouterr().out
    assert plan.counts == {"t2i": 11, "v2v": 11, "t2v": 10}  # batch 32 of an even mixture
    assert plan.step_flops == sum(n * plan.tasks[t].train_flops for t, n in plan.counts.items())
    assert f"{plan.step_flops:.3e} FLOPs" in out
    for t in plan.tasks.values():
        assert f"{t.train_flops:.3e}" in out


def test_plan_prints_the_paper_parameter_count_without_building_the_model(capsys) -> None:
    assert main(["plan", "--preset", "paper"]) == 0
    out = capsys.readouterr().out
    assert f"parameters      {paper_parameter_count()['total']:,}" in out
    assert "A100" in out and "H100" in out and "checkpointing" in out


def test_checkpointing_keeps_less_and_the_step_time_follows_the_peak() -> None:
    plan = make_plan("base", utilisation=0.5)
    for t in plan.tasks.values():
        assert t.activations_checkpointed < t.activations
    a100, h100 = (plan.step_seconds(peak) for peak in (312e12, 989e12))
    assert a100 == pytest.approx(plan.step_flops / (0.5 * 312e12))
    assert h100 == pytest.approx(a100 * 312 / 989)
