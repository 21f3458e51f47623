"""The device policy (`nuwa_lab.device`): each decision, also on machines this one is not.

What is available is mocked: `torch.cuda.is_available`, the GPU's name, count and bf16 support
are patched, and whether FlexAttention compiles for the GPU (`policy.compiled_flex_usable`) is set
by hand, because the real probe asks the driver and Triton. Where a choice can run here, it runs on
the fake `cuda:0` of test_fake_cuda.py (`FakeCuda`: real values on the host, torch's device rules
under `FakeTensorMode`). A compiled FlexAttention cannot: Inductor lowers it through Triton, which
asks the driver for the GPU's properties. So for "flex" these tests check the choice, that `attend`
hands the call to `flex_attend` to be compiled, and run FlexAttention uncompiled under plain
`FakeTensorMode` (shapes and devices, no values).
"""

from __future__ import annotations

import math
import subprocess
import sys
import unittest.mock

import pytest
import torch
import torch.nn.functional as F
from test_fake_cuda import CUDA, FakeCuda, host  # the fake cuda:0 (tests/unit/test_fake_cuda.py)
from torch._subclasses.fake_tensor import FakeTensorMode

import nuwa_lab.attention.api as api
import nuwa_lab.device.policy as policy
from nuwa_lab.attention import PATTERNS, attend, make_spec
from nuwa_lab.attention.dense import masked_sdpa_attend
from nuwa_lab.attention.flex import flex_attend
from nuwa_lab.device import (
    AUTO_MASKED_PAIRS,
    Available,
    attention_backend,
    autocast_dtype,
    available,
    pick_device,
    pin_memory,
    print_once,
    process_group_backend,
    resolve_device,
    summary,
)

# the CPU thresholds as measured (nuwa_lab.device.policy): written out, so a change shows here
MEASURED_CPU_PAIRS = {"full": 0, "axial": 64 * 64, "block": 64 * 64, "nearby": 256 * 256}
OPTIONS = dict(extent=(1, 1, 1), block=(1, 4, 4))


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    """A plain process: not under torchrun, the policy not printed yet."""
    for name in ("LOCAL_RANK", "RANK"):
        monkeypatch.delenv(name, raising=False)
    print_once.cache_clear()
    yield
    print_once.cache_clear()


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def mock_gpu(monkeypatch, *, compiled_flex: bool = True, bf16: bool = True, count: int = 1):
    """This process sees `count` GPUs called "NVIDIA Fake GPU"."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "NVIDIA Fake GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(policy, "compiled_flex_usable", lambda: compiled_flex)


@pytest.fixture
def gpu(monkeypatch):
    mock_gpu(monkeypatch)


def never_probed():
    raise AssertionError("the policy asked whether FlexAttention compiles where it does not matter")


# ---- the device --------------------------------------------------------------------------------


def test_auto_is_the_cpu_without_cuda(no_gpu) -> None:
    assert not available().cuda
    assert resolve_device("auto") == torch.device("cpu")
    assert pick_device("auto", Available(cuda=False)) == "cpu"


def test_auto_is_cuda_0_with_cuda(gpu) -> None:
    facts = available()
    assert facts.cuda and facts.gpu_name == "NVIDIA Fake GPU" and facts.bf16 and facts.compiled_flex
    assert resolve_device("auto") == torch.device("cuda:0")
    assert resolve_device() == torch.device("cuda:0")


def test_auto_under_torchrun_is_the_process_own_gpu(monkeypatch) -> None:
    mock_gpu(monkeypatch, count=2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == torch.device("cuda:1")
    assert pick_device("auto", Available(cuda=True, local_rank=3)) == "cuda:3"


def test_an_explicit_device_is_kept(gpu) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_cuda_asked_without_a_gpu_is_refused_with_the_fix(no_gpu) -> None:
    with pytest.raises(ValueError, match="use DEVICE='auto' or 'cpu'"):
        resolve_device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")


def test_config_re_exports_it_and_stays_free_of_torch() -> None:
    import nuwa_lab.config

    assert nuwa_lab.config.resolve_device is resolve_device
    code = "import sys, nuwa_lab.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- attention on the CPU: the measured rule, unchanged ----------------------------------------

GRIDS = [(1, 8, 8), (4, 8, 8), (1, 16, 16), (8, 16, 16)]  # 64, 256, 256 and 2,048 tokens


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_cpu_backend_is_the_measured_rule(pattern, grid, monkeypatch) -> None:
    monkeypatch.setattr(policy, "compiled_flex_usable", never_probed)
    n = math.prod(grid)
    want = "masked" if n * n <= MEASURED_CPU_PAIRS[pattern] else "efficient"
    for decoding in (False, True):
        for compiled_flex in (None, True):  # whatever compiles, the CPU keeps its paths
            got = attention_backend(
                pattern,
                device_type="cpu",
                n_pairs=n * n,
                head_width=32,
                decoding=decoding,
                compiled_flex=compiled_flex,
            )
            assert got == want, (decoding, compiled_flex)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("grid", [(1, 8, 8), (4, 8, 8), (2, 16, 16)])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_auto_on_the_cpu_returns_exactly_the_chosen_path(pattern, grid, causal) -> None:
    """Bit for bit: "auto" is the masked SDPA call below the threshold, the pattern's path above."""
    n = math.prod(grid)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, n, 16, generator=g) for _ in range(3))
    spec = make_spec(pattern, grid, None, causal, **OPTIONS)
    got = attend(q, k, v, pattern=pattern, q_grid=grid, causal=causal, **OPTIONS)
    if n * n <= MEASURED_CPU_PAIRS[pattern]:
        want = masked_sdpa_attend(q, k, v, spec)
    else:
        want = api.EFFICIENT_PATHS[pattern](q, k, v, spec, None)
    assert torch.equal(got, want)


def test_the_cpu_thresholds_are_the_ones_attention_re_exports() -> None:
    assert api.AUTO_MASKED_PAIRS is AUTO_MASKED_PAIRS
    assert {p: AUTO_MASKED_PAIRS.get(p, 0) for p in PATTERNS} == MEASURED_CPU_PAIRS


# ---- attention on CUDA -------------------------------------------------------------------------

LARGE = 432 * 432  # a (3, 12, 12) target grid: beyond every CPU threshold


@pytest.mark.parametrize("pattern", PATTERNS)
def test_cuda_backend_per_pattern(pattern) -> None:
    def pick(**kw):
        kw = {"n_pairs": LARGE, "head_width": 32, "compiled_flex": True} | kw
        return attention_backend(pattern, device_type="cuda", **kw)

    sparse = pattern != "full"
    assert pick() == ("flex" if sparse else "efficient")  # full: one SDPA call
    assert pick(compiled_flex=False) == "efficient"  # the fallback: the hand-written paths
    assert pick(decoding=True) == "efficient"  # a block mask per token would not pay
    assert pick(head_width=8) == "efficient"  # Inductor refuses heads narrower than 16
    small = MEASURED_CPU_PAIRS[pattern]
    if sparse:
        assert pick(n_pairs=small) == "masked" and pick(n_pairs=small + 1) == "flex"


def test_cuda_asks_whether_flex_compiles_only_when_it_matters(monkeypatch) -> None:
    monkeypatch.setattr(policy, "compiled_flex_usable", never_probed)
    for pattern, kw in [
        ("full", {}),
        ("nearby", {"n_pairs": 100}),
        ("nearby", {"decoding": True}),
        ("axial", {"head_width": 8}),
    ]:
        kw = {"n_pairs": LARGE, "head_width": 32} | kw
        attention_backend(pattern, device_type="cuda", **kw)
    monkeypatch.setattr(policy, "compiled_flex_usable", lambda: True)
    assert attention_backend("block", device_type="cuda", n_pairs=LARGE, head_width=32) == "flex"


def cases(grid=(3, 12, 12), cross=(3, 8, 8)) -> dict[str, dict]:
    """Large problems, each with the chosen path under compiled flex (the fallback: efficient)."""
    return {
        "causal": dict(q_grid=grid, causal=True),
        "cross": dict(q_grid=grid, kv_grid=cross),
        "decode": dict(q_grid=grid, causal=True, q_positions=list(range(200, 204))),
    }


def qkv(case: dict, width: int, device: str = "cpu"):
    n_q = len(case["q_positions"]) if "q_positions" in case else math.prod(case["q_grid"])
    n_k = math.prod(case.get("kv_grid") or case["q_grid"])
    g = torch.Generator().manual_seed(0)
    return [torch.randn(1, 2, n, width, generator=g).to(device) for n in (n_q, n_k, n_k)]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_the_fallback_paths_run_on_fake_cuda_and_equal_the_cpu(pattern, monkeypatch) -> None:
    """Compiled flex unavailable: "auto" on cuda:0 takes the hand-written paths, on the device."""
    monkeypatch.setattr(policy, "compiled_flex_usable", lambda: False)
    for name, case in cases().items():
        q, k, v = qkv(case, width=16)
        kw = {"q_positions": torch.tensor(case.pop("q_positions"))} if name == "decode" else {}
        want = attend(q, k, v, pattern=pattern, backend="dense", **case, **kw, **OPTIONS)
        fake = FakeCuda()
        with fake:
            inputs = [x.to("cuda") for x in (q, k, v)]
            cuda_kw = {key: t.to("cuda") for key, t in kw.items()}
            got = attend(*inputs, pattern=pattern, **case, **cuda_kw, **OPTIONS)
        assert got.device == CUDA, name
        torch.testing.assert_close(host(got), want, atol=1e-5, rtol=1e-5, msg=name)


@pytest.fixture(scope="module")
def plain_fake_mode() -> FakeTensorMode:
    """One `FakeTensorMode` for the module: flex caches its block masks per device string."""
    return FakeTensorMode()


@pytest.mark.parametrize("pattern", ["axial", "block", "nearby"])
def test_flex_is_chosen_on_cuda_and_attend_hands_the_call_to_it(
    pattern, monkeypatch, plain_fake_mode
) -> None:
    """With compiled flex available, "auto" calls `flex_attend` as it is (compiled); here the
    call runs uncompiled under plain FakeTensorMode, which checks the block mask and the output
    are built on cuda:0. A decoding step still takes the efficient path."""
    monkeypatch.setattr(policy, "compiled_flex_usable", lambda: True)
    calls = []

    def spy(q, k, v, spec, q_positions=None, **kw):
        calls.append((spec.pattern, q_positions is None, kw))
        return flex_attend(q, k, v, spec, q_positions, compiled=False)

    monkeypatch.setattr(api, "flex_attend", spy)
    monkeypatch.setattr(api, "masked_sdpa_attend", lambda *a, **k: pytest.fail("masked path"))
    for name, case in cases().items():
        if name == "decode":
            continue
        with plain_fake_mode:
            q, k, v = (torch.empty(x.shape, device="cuda") for x in qkv(case, width=16))
            out = attend(q, k, v, pattern=pattern, **case, **OPTIONS)
        assert out.device == CUDA and out.shape == q.shape, name
    assert calls == [(pattern, True, {})] * 2  # no `compiled=False`: compiled on a GPU
    assert attention_backend(pattern, device_type="cuda", n_pairs=LARGE, head_width=8) != "flex"


# ---- precision, pinned memory, process groups --------------------------------------------------


def test_autocast_is_bf16_on_cuda_and_none_on_the_cpu() -> None:
    assert autocast_dtype("cuda", amp=True, bf16=True) is torch.bfloat16
    assert autocast_dtype("cuda", amp=False, bf16=True) is None  # train.amp = False
    assert autocast_dtype("cuda", amp=True, bf16=False) is None  # no bf16: fp32, not fp16
    assert autocast_dtype("cpu", amp=True, bf16=True) is None


def test_bf16_autocast_keeps_fp32_master_weights_on_fake_cuda() -> None:
    """Under the policy's autocast the matmuls run in bf16 and the parameters stay fp32."""
    layer = torch.nn.Linear(16, 4)
    x = torch.randn(8, 16)
    dtype = autocast_dtype("cuda", amp=True, bf16=True)
    with (  # without a driver, autocast would switch itself off (as in test_fake_cuda.py)
        unittest.mock.patch("torch.cuda.is_available", lambda: True),
        unittest.mock.patch("torch.cuda.is_bf16_supported", lambda *a, **k: True),
    ):
        autocast = torch.autocast("cuda", dtype=dtype)
    swap = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        with FakeCuda():
            layer.to("cuda")
            with autocast:
                out = layer(x.to("cuda"))
            loss = F.mse_loss(out.float(), torch.zeros(8, 4, device="cuda"))
    finally:
        torch.__future__.set_swap_module_params_on_conversion(swap)
    assert out.dtype == torch.bfloat16 and loss.dtype == torch.float32
    assert layer.weight.dtype == torch.float32 and layer.weight.device == CUDA


def test_pinned_memory_only_on_cuda() -> None:
    assert pin_memory("cuda") and not pin_memory("cpu")


def test_nccl_between_gpus_and_gloo_between_cpus() -> None:
    assert process_group_backend("cuda") == "nccl" and process_group_backend("cpu") == "gloo"


# ---- the summary, printed once -----------------------------------------------------------------


def test_the_choice_is_printed_once_on_the_cpu(no_gpu, capsys) -> None:
    resolve_device("auto")
    resolve_device("cpu")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("device: cpu (") and "full=sdpa" in line
    for pattern in ("axial", "block", "nearby"):
        assert f"{pattern}=efficient" in line
    assert "training precision: fp32" in line and "pinned memory: off" in line


def test_the_choice_is_printed_once_on_cuda(gpu, capsys) -> None:
    resolve_device("auto")
    resolve_device("auto")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("device: cuda:0 (NVIDIA Fake GPU), attention: full=sdpa")
    for pattern in ("axial", "block", "nearby"):
        assert f"{pattern}=flex (compiled)" in line
    assert "training precision: bf16 autocast, fp32 weights" in line
    assert line.endswith("pinned memory: on")


def test_without_compiled_flex_or_bf16_the_summary_says_so() -> None:
    line = summary("cuda:0", Available(cuda=True, gpu_name="NVIDIA Old GPU"))
    assert "nearby=efficient" in line and "flex" not in line
    assert "training precision: fp32" in line and "pinned memory: on" in line


def test_only_the_first_rank_prints(no_gpu, monkeypatch, capsys) -> None:
    monkeypatch.setenv("RANK", "1")
    resolve_device("auto")
    assert capsys.readouterr().out == ""
