"""The CUDA path without a GPU: the model, sampler, attention, tokenizers and tasks on `cuda:0`.

How. Plain `FakeTensorMode` gives `cuda:0` tensors on a CPU-only machine and raises
`FakeTensorDeviceMismatchError` when a CPU tensor is mixed in, but a fake tensor has no values, so
it stops at the first data-dependent step: `.item()` / `bool(t)` (the range checks at the top of
`Nuwa.forward`, the sampler's `.tolist()`), `nonzero` / `unique` (the index plans of the block and
nearby paths), the inverse-CDF draw of the sampler. So each op runs twice here (`FakeCuda`):
- under `FakeTensorMode`, on fake copies of its arguments (a `cuda:0` fake for every `OnFakeCuda`
  tensor, a CPU fake for every CPU tensor): torch's own device rules decide the output's device,
  and a CPU tensor mixed with a CUDA one raises there (as on a GPU: 0-d CPU scalars and CPU
  indices of `t[idx]` are allowed, `index_select` with CPU indices is not);
- on the CPU, on the real values (`OnFakeCuda.host`), for the result.
Ops whose output shape or value depends on the data (`nonzero`, `.item()`) cannot run under
`FakeTensorMode`; for those the rule is the plain one: all non-scalar tensors on one device. So a
whole forward pass, a whole sampling loop and the quantizer's k-means++ run "on CUDA" with real
numbers, which are compared with the same computation on the CPU. `FakeCuda` also records the
host syncs (`.item()`, `bool(t)`) and host <-> device copies by call site.

What cannot run here, and why:
- backward passes: the autograd engine starts a worker thread per CUDA device and asks the driver
  for its context (`hasPrimaryContext`), with fake tensors too; forward passes are tested, and the
  backward kernels are the transposes of the same ops.
- the fused SDPA kernels (flash, memory-efficient): CUDA-only code. `_fused_sdp_choice` answers
  "math", so `scaled_dot_product_attention` runs as its reference ops, each checked.
- FlexAttention: its eager path is wrapped in `torch.compile(backend="eager")`, which refuses a
  Python dispatch mode, so it runs under plain `FakeTensorMode` (shapes and devices only); compiled
  FlexAttention lowers through Inductor, which asks the driver for the GPU's properties. On the
  way there, Inductor refuses head widths below 16 on CUDA ("embedding dimension ... must be at
  least 16"): the device policy must not pick flex for such models.
- CUDA random generators need a driver: `HostGenerator` is a CPU generator that reports the device
  it was asked for, so the quantizer's draws match the CPU's (on a GPU they are different draws).
- bf16 autocast switches itself off when `torch.cuda.is_available()` is False; it is turned on with
  that check patched for the construction of the `torch.autocast` object only.
- data-dependent steps run on the host values, so they are covered; their cost on a GPU (a host
  sync each) is counted in `FakeCuda.syncs`, not measured.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import sys
import unittest.mock
import warnings
from collections.abc import Iterable

import pytest
import torch
from torch._subclasses.fake_tensor import (
    FakeTensor,
    FakeTensorDeviceMismatchError,
    FakeTensorMode,
    unset_fake_temporarily,
)
from torch.utils._python_dispatch import TorchDispatchMode, return_and_correct_aliasing
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from nuwa_lab.attention import PATTERNS, attend, make_spec
from nuwa_lab.attention.flex import flex_attend
from nuwa_lab.config import make_config
from nuwa_lab.metrics import ImageProbe, VideoProbe, lpips_distance, lpips_model, psnr, ssim
from nuwa_lab.model import Condition, Nuwa, model_sizes
from nuwa_lab.model.sample import sample
from nuwa_lab.tasks import (
    TaskKit,
    Tokenizers,
    completion_metrics,
    manipulation_metrics,
    prediction_metrics,
    region_psnr,
    run_task,
    task_items,
    task_tensors,
)
from nuwa_lab.tasks.evaluate import asked_objects
from nuwa_lab.tokenizer import VQGAN, VQGANSeg
from nuwa_lab.tokenizer.losses import VQGANLoss
from nuwa_lab.world import TASKS, ShapesWorld, TextTokenizer

CUDA = torch.device("cuda:0")
CPU = torch.device("cpu")
aten = torch.ops.aten
SDPA_MATH = 0  # torch.nn.attention.SDPBackend.MATH, as `_fused_sdp_choice` returns it


# ---- the fake device ---------------------------------------------------------------------------


class DeviceMismatch(RuntimeError):
    """A CPU tensor met a CUDA one in an op: what a GPU would refuse."""


class OnFakeCuda(torch.Tensor):
    """A real CPU tensor (`.host`) that says it lives on cuda:0."""

    host: torch.Tensor

    @staticmethod
    def __new__(cls, host: torch.Tensor):
        return torch.Tensor._make_wrapper_subclass(
            cls,
            host.size(),
            strides=host.stride(),
            storage_offset=host.storage_offset(),
            dtype=host.dtype,
            layout=host.layout,
            device=CUDA,
            requires_grad=host.requires_grad,
        )

    def __init__(self, host: torch.Tensor) -> None:
        self.host = host

    __torch_function__ = torch._C._disabled_torch_function_impl

    def __repr__(self) -> str:
        return f"OnFakeCuda({self.host!r})"

    def tolist(self):  # Tensor.tolist refuses subclasses; on a GPU it is a copy to the host too
        return self.cpu().tolist()

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        raise RuntimeError(f"{func} on an OnFakeCuda tensor outside FakeCuda()")


def call_site() -> str:
    """`module.py:line` of the innermost nuwa_lab frame on the stack."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename.replace("\\", "/")
        if "/nuwa_lab/" in name:
            return f"{name.split('/nuwa_lab/')[-1]}:{frame.f_lineno}"
        frame = frame.f_back
    return "test"


class FakeCuda(TorchDispatchMode):
    """Runs every op on the host values; `FakeTensorMode` decides on which device the result is.

    `syncs`: call sites of `.item()` / `bool(t)` on a CUDA tensor (a host sync each on a GPU);
    `copies`: ("to cuda" | "to cpu", call site) of every copy between host and device.
    """

    def __init__(self) -> None:
        super().__init__()
        self.fake_mode = FakeTensorMode()
        self.syncs: list[str] = []
        self.copies: list[tuple[str, str]] = []

    def __enter__(self):
        self.fake_mode.__enter__()  # below this mode; while it is active, lazy CUDA init is skipped
        return super().__enter__()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self.fake_mode.__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is aten._local_scalar_dense.default:  # .item(), bool(t), int(t), float(t)
            x = args[0]
            if isinstance(x, OnFakeCuda):
                self.syncs.append(call_site())
                x = x.host
            with unset_fake_temporarily():
                return x.item()
        if func is aten._fused_sdp_choice.default:
            return SDPA_MATH
        devices = self._output_devices(func, args, kwargs)  # one per tensor output
        if func is aten._to_copy.default:
            source = CUDA if isinstance(args[0], OnFakeCuda) else args[0].device
            target = torch.device(kwargs.get("device") or source)
            if source.type != target.type:
                self.copies.append((f"to {target.type}", call_site()))
        host_args, host_kwargs = tree_map(_to_host, (args, kwargs))
        if host_kwargs.get("pin_memory"):
            host_kwargs["pin_memory"] = False  # pinning needs a driver; it changes no value
        with unset_fake_temporarily():
            out = func(*host_args, **host_kwargs)
        flat, spec = tree_flatten(out)
        on_device = iter(devices)
        flat = [
            OnFakeCuda(x) if isinstance(x, torch.Tensor) and next(on_device).type == "cuda" else x
            for x in flat
        ]
        return return_and_correct_aliasing(func, args, kwargs, tree_unflatten(flat, spec))

    def _output_devices(self, func, args, kwargs) -> Iterable[torch.device]:
        """The device of each tensor output, by torch's own rules (FakeTensorMode)."""
        fake_args, fake_kwargs = tree_map(self._as_fake, (args, kwargs))
        try:
            out = func(*fake_args, **fake_kwargs)  # FakeTensorMode sits below this mode
        except FakeTensorDeviceMismatchError as error:
            raise DeviceMismatch(f"{func} at {call_site()}: {error}") from None
        except RuntimeError as error:
            if "same device" in str(error) or "found at least two devices" in str(error):
                raise DeviceMismatch(f"{func} at {call_site()}: {error}") from None
            device = self._plain_rule(func, args, kwargs)  # data-dependent: no fake kernel
            return itertools.repeat(device)
        return [x.device for x in tree_flatten(out)[0] if isinstance(x, torch.Tensor)]

    def _as_fake(self, x):
        if not isinstance(x, torch.Tensor):
            return x
        host = x.host if isinstance(x, OnFakeCuda) else x
        with unset_fake_temporarily():
            storage = torch.UntypedStorage(host.untyped_storage().nbytes(), device="meta")
            meta = torch.empty(0, dtype=host.dtype, device="meta")
            meta.set_(storage, host.storage_offset(), host.size(), host.stride())
        return FakeTensor(self.fake_mode, meta, CUDA if isinstance(x, OnFakeCuda) else x.device)

    @staticmethod
    def _plain_rule(func, args, kwargs) -> torch.device:
        """All tensors but 0-d CPU scalars on one device (or the `device=` of a factory)."""
        tensors = [x for x in tree_flatten((args, kwargs))[0] if isinstance(x, torch.Tensor)]
        found = {
            CUDA if isinstance(x, OnFakeCuda) else x.device
            for x in tensors
            if isinstance(x, OnFakeCuda) or x.dim() > 0
        }
        if kwargs.get("device") is not None:
            found = {torch.device(kwargs["device"])}
        if len(found) > 1:
            raise DeviceMismatch(f"{func} at {call_site()}: tensors on {sorted(map(str, found))}")
        return found.pop() if found else CPU


def _to_host(x):
    if isinstance(x, OnFakeCuda):
        return x.host
    if isinstance(x, torch.device) and x.type == "cuda":
        return CPU
    return x


class HostGenerator(torch.Generator):
    """A CPU generator that reports the device it was asked for (a CUDA one needs a driver)."""

    asked: list[torch.device] = []

    def __new__(cls, device: torch.device | str = "cpu"):
        generator = super().__new__(cls, "cpu")
        generator.asked_device = torch.device(device)
        cls.asked.append(generator.asked_device)
        return generator

    def __init__(self, device: torch.device | str = "cpu") -> None:
        pass

    @property
    def device(self) -> torch.device:
        return self.asked_device


@pytest.fixture
def fake_cuda(monkeypatch):
    """A `FakeCuda` mode: `with fake_cuda:` runs the block on the fake device."""
    monkeypatch.setattr(torch, "Generator", HostGenerator)
    HostGenerator.asked = []
    swap = torch.__future__.get_swap_module_params_on_conversion()
    # module.to("cuda") swaps each parameter for its converted copy (an OnFakeCuda tensor)
    # instead of writing into `.data`, which would leave a plain Parameter around it
    torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        yield FakeCuda()
    finally:
        torch.__future__.set_swap_module_params_on_conversion(swap)


def host(x):
    """The CPU values of what came back from the fake device (tensors in tuples, lists, dicts)."""
    return tree_map(lambda t: t.host if isinstance(t, OnFakeCuda) else t, x)


def on_fake_cuda(x) -> bool:
    """Every tensor in `x` is on the fake device."""
    tensors = [t for t in tree_flatten(x)[0] if isinstance(t, torch.Tensor)]
    return bool(tensors) and all(isinstance(t, OnFakeCuda) for t in tensors)


def to_cuda(x):
    """Tensors (in tuples, lists, dicts) moved to the fake device; the rest unchanged."""
    return tree_map(lambda t: t.to("cuda") if isinstance(t, torch.Tensor) else t, x)


@contextlib.contextmanager
def cuda_bf16_autocast():
    """`torch.autocast("cuda", bf16)`, which otherwise turns itself off without a driver."""
    with (
        unittest.mock.patch("torch.cuda.is_available", lambda: True),
        unittest.mock.patch("torch.cuda.is_bf16_supported", lambda *a, **k: True),
    ):
        autocast = torch.autocast("cuda", dtype=torch.bfloat16)
    with autocast:
        yield


def test_the_fake_device_refuses_a_cpu_tensor_and_counts_host_reads(fake_cuda) -> None:
    with fake_cuda:
        x = torch.ones(3, 4, device="cuda")
        assert isinstance(x, OnFakeCuda) and x.device == CUDA
        with pytest.raises(DeviceMismatch, match="same device"):
            x + torch.ones(3, 4)
        with pytest.raises(DeviceMismatch):
            x.index_select(0, torch.tensor([0, 1]))
        y = x + torch.tensor(1.0)  # a 0-d CPU scalar is fine, as on a GPU
        z = x[torch.tensor([0, 2])]  # and so are CPU indices of t[idx]
        total = float(x.sum())
        back = x.cpu()
        rows = (x > 0).nonzero()  # a data-dependent shape: runs on the host values
    assert torch.equal(host(y), torch.full((3, 4), 2.0)) and torch.equal(host(z), torch.ones(2, 4))
    assert total == 12.0 and fake_cuda.syncs == ["test"]
    assert back.device == CPU and fake_cuda.copies == [("to cpu", "test")]
    assert rows.device == CUDA and host(rows).shape == (12, 2)


# ---- the model ---------------------------------------------------------------------------------

CFG = make_config("smoke")
K = CFG.tokenizer.codebook_size
KINDS = ("text", "image_sketch", "video_sketch", "none")


def smoke_model(**model_overrides) -> Nuwa:
    cfg = make_config("smoke", **{f"model.{k}": v for k, v in model_overrides.items()})
    torch.manual_seed(0)
    return Nuwa(cfg.model, **model_sizes(cfg)).eval()


def make_condition(kind: str, b: int = 2) -> Condition:
    g = torch.Generator().manual_seed(1)
    sketch = CFG.tokenizer.seg_codebook_size
    if kind == "text":
        ids = torch.randint(4, 20, (b, CFG.text.max_length), generator=g)
        ids[0, 9:] = 0  # padding: the key-padding path
        return Condition.text(ids)
    if kind == "image_sketch":
        return Condition.image_sketch(torch.randint(0, sketch, (b, 4, 4), generator=g))
    if kind == "video_sketch":
        return Condition.video_sketch(torch.randint(0, sketch, (b, 2, 4, 4), generator=g))
    return Condition.none(b)


def make_target(shape: tuple[int, ...], b: int = 2) -> torch.Tensor:
    return torch.randint(0, K, (b, *shape), generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target", [(4, 4), (2, 4, 4)], ids=["image", "video"])
def test_training_loss_on_fake_cuda_equals_the_cpu(kind, target, fake_cuda) -> None:
    model, condition, y = smoke_model(), make_condition(kind), make_target(target)
    mask = torch.rand(y.shape, generator=torch.Generator().manual_seed(3)) < 0.5
    with torch.no_grad():  # a graph would keep the parameters from moving (swapped) to the device
        want = [model(condition, y), model(condition, y, loss_mask=mask)]
    with fake_cuda:
        model.to("cuda")
        condition, y, mask = condition.to("cuda"), y.to("cuda"), mask.to("cuda")
        fake_cuda.copies.clear()
        got = [model(condition, y)]
        fake_cuda.syncs.clear()
        got.append(model(condition, y, loss_mask=mask))
    assert on_fake_cuda(got)
    assert fake_cuda.copies == []  # no hidden round trip to the host in the forward pass
    # host reads (a wait for the GPU each) only in the argument checks at the top of the forward
    # pass: the target and condition ranges, the caption padding once; the attention masks are
    # checked once per mask, not in every layer of every pass
    files = [site.split(":")[0] for site in fake_cuda.syncs]
    assert set(files) <= {"model/nuwa.py", "model/embedding.py", "model/condition.py"}
    assert files.count("model/condition.py") == (kind == "text")
    torch.testing.assert_close(host(got), want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_bf16_training_loss_on_a_grid_that_takes_the_efficient_paths(pattern, fake_cuda) -> None:
    # (3, 12, 12) = 432 target tokens: beyond the sizes where the "auto" backend hands the mask
    # to SDPA, so the decoder's self-attention runs the efficient path of every pattern, and the
    # cross-attention is rescaled onto a (2, 6, 6) sketch video
    cfg = make_config("smoke", **{"model.attention": pattern, "model.cross_attention": pattern})
    torch.manual_seed(0)
    model = Nuwa(cfg.model, **(model_sizes(cfg) | {"max_grid": (3, 12, 12)})).eval()
    g = torch.Generator().manual_seed(1)
    condition = Condition.video_sketch(torch.randint(0, 16, (1, 2, 6, 6), generator=g))
    y = torch.randint(0, K, (1, 3, 12, 12), generator=g)
    with torch.no_grad():
        _, want = model(condition, y)
    with fake_cuda, cuda_bf16_autocast():
        model.to("cuda")
        logits, loss = model(condition.to("cuda"), y.to("cuda"))
    assert on_fake_cuda((logits, loss)) and logits.dtype == torch.bfloat16
    assert loss.dtype == torch.float32 and abs(float(host(loss)) - float(want)) < 0.05


def test_sampling_with_and_without_the_kv_cache_on_fake_cuda_equals_the_cpu(fake_cuda) -> None:
    """A few free positions: every sampling step (a forward with or without the cache, top-k and
    top-p, the inverse-CDF draw, the fixed tokens) runs on the fake device, with real numbers."""
    model, condition = smoke_model(), make_condition("video_sketch")
    fixed = torch.ones(2, 2, 4, 4, dtype=torch.bool)
    fixed[:, 1, 1, 1:3] = False  # two free positions in the second frame
    fixed[1, 1, 3, 3] = False  # and the last one of the second sample
    given = make_target((2, 4, 4))
    options = dict(generator=0, temperature=0.7, top_k=8, top_p=0.9)
    want = sample(model, condition, (2, 4, 4), fixed, given, **options)
    got = {}
    with fake_cuda:
        model.to("cuda")
        inputs = to_cuda((condition, fixed, given))
        for use_cache in (True, False):
            got[use_cache] = sample(
                model, inputs[0], (2, 4, 4), *inputs[1:], use_cache=use_cache, **options
            )
    for tokens in got.values():
        assert tokens.device == CUDA and torch.equal(host(tokens), want)


def test_incremental_decoding_on_fake_cuda_equals_the_teacher_forced_logits(fake_cuda) -> None:
    """The per-token forward with the KV cache (`Nuwa.start`, `Nuwa.step`), three positions."""
    model, condition, y = smoke_model(), make_condition("text"), make_target((2, 4, 4))
    with fake_cuda:
        model.to("cuda")
        condition, y = condition.to("cuda"), y.to("cuda")
        logits, _ = model(condition, y)
        state = model.start(condition, (2, 4, 4))
        bos = torch.full((2, 1), model.target_embedding.bos_id, device="cuda")
        inputs = torch.cat([bos, y.flatten(1)[:, :2]], dim=1)
        first = model.step(state, inputs[:, :2], torch.arange(2, device="cuda"))  # 0 and 1
        third = model.step(state, inputs[:, 2:], torch.arange(2, 3, device="cuda"))  # 2
    assert on_fake_cuda((first, third, state.caches))
    steps = torch.cat([host(first), host(third)], dim=1)
    torch.testing.assert_close(steps, host(logits).flatten(1, 3)[:, :3], atol=1e-5, rtol=1e-5)


# ---- attention ---------------------------------------------------------------------------------

CASES = {
    "self": dict(q_grid=(2, 4, 4)),
    "causal": dict(q_grid=(2, 4, 4), causal=True),
    "quadrant": dict(q_grid=(2, 4, 4), causal=True, causal_rule="quadrant"),
    "shift": dict(q_grid=(2, 4, 4), border="shift"),
    "cross_down": dict(q_grid=(2, 4, 4), kv_grid=(1, 2, 3)),
    "cross_up": dict(q_grid=(1, 2, 2), kv_grid=(2, 4, 4)),
    "decode": dict(q_grid=(2, 4, 4), causal=True, q_positions=[5, 6, 7], n_keys=8),
    "decode_cross": dict(q_grid=(2, 4, 4), kv_grid=(1, 2, 3), q_positions=[20, 21]),
}
OPTIONS = dict(extent=(1, 1, 1), block=(1, 2, 2))


def attention_inputs(case: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """q, k, v (2 samples, 2 heads of width 8) and the keyword arguments of `attend`."""
    kw = {k: v for k, v in case.items() if k != "n_keys"}
    q_grid, kv_grid = case["q_grid"], case.get("kv_grid", case["q_grid"])
    n_q = len(case["q_positions"]) if "q_positions" in case else math.prod(q_grid)
    n_k = case.get("n_keys", math.prod(kv_grid))
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, n, 8, generator=g) for n in (n_q, n_k, n_k))
    if "q_positions" in kw:
        kw["q_positions"] = torch.tensor(kw["q_positions"])
    return q, k, v, kw


@pytest.mark.parametrize("backend", ["dense", "efficient", "auto"])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_every_attention_path_on_fake_cuda_equals_the_cpu_oracle(
    pattern, backend, fake_cuda
) -> None:
    for name, case in CASES.items():
        q, k, v, kw = attention_inputs(case)
        want = attend(q, k, v, pattern=pattern, backend="dense", **OPTIONS, **kw)
        with fake_cuda:
            q, k, v, kw = to_cuda((q, k, v, kw))
            got = attend(q, k, v, pattern=pattern, backend=backend, **OPTIONS, **kw)
        assert got.device == CUDA, name
        torch.testing.assert_close(host(got), want, atol=1e-5, rtol=1e-5, msg=name)


@pytest.fixture(scope="module")
def plain_fake_mode() -> FakeTensorMode:
    """One `FakeTensorMode` for the module: flex caches its block masks per device string."""
    return FakeTensorMode()


@pytest.mark.parametrize("pattern", PATTERNS)
def test_flex_attention_runs_on_fake_cuda_uncompiled(pattern, plain_fake_mode) -> None:
    """FlexAttention under plain `FakeTensorMode` (shapes and devices, no values): the block mask
    is built on cuda:0 and the uncompiled kernel runs; why not compiled: the module docstring."""
    with plain_fake_mode, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "flex_attention called without compile"
        for name in ("self", "causal", "quadrant", "cross_down", "decode"):
            q, k, v, kw = attention_inputs(CASES[name])
            q, k, v = (torch.empty(x.shape, device="cuda") for x in (q, k, v))
            positions = kw.pop("q_positions", None)
            if positions is not None:
                positions = positions.to("cuda")
            spec = make_spec(pattern, **kw, **OPTIONS)
            out = flex_attend(q, k, v, spec, positions, compiled=False)
            assert out.device == CUDA and out.shape == q.shape, name


# ---- the tokenizers ----------------------------------------------------------------------------


def test_vqgan_training_forward_encode_and_decode_on_fake_cuda_equal_the_cpu(fake_cuda) -> None:
    """The training forward seeds the codebook (k-means++ on the batch), updates the EMA and
    restarts dead codes: every random draw uses a generator made on the codebook's device."""
    cfg = make_config("smoke", **{"tokenizer.dead_code_steps": 1})
    torch.manual_seed(0)
    cpu = VQGAN(cfg.tokenizer)
    gpu = copy.deepcopy(cpu)
    g = torch.Generator().manual_seed(0)
    images, videos = torch.rand(4, 3, 16, 16, generator=g), torch.rand(2, 2, 3, 16, 16, generator=g)
    # step 0 seeds the codebook, step 2 restarts the codes unused at step 1
    with torch.no_grad():
        want = [cpu(images.roll(step, dims=-1)) for step in range(3)]
    with fake_cuda:
        gpu.to("cuda")
        got = [gpu(images.roll(step, dims=-1).to("cuda")) for step in range(3)]
        gpu.eval()
        codes = gpu.encode(videos.to("cuda"))
        pixels = gpu.decode(codes)
    for a, b in zip(got, want, strict=True):
        assert on_fake_cuda((a.recon, a.indices, a.quant.loss, a.quant.perplexity))
        assert torch.equal(host(a.indices), b.indices) and a.quant.restarted == b.quant.restarted
        torch.testing.assert_close(host(a.recon), b.recon, atol=1e-5, rtol=1e-5)
    assert want[2].quant.restarted > 0 and CUDA in HostGenerator.asked
    cpu.eval()
    assert codes.device == pixels.device == CUDA and torch.equal(host(codes), cpu.encode(videos))
    torch.testing.assert_close(host(pixels), cpu.decode(host(codes)))


def test_vqgan_seg_and_the_gan_losses_on_fake_cuda(fake_cuda) -> None:
    torch.manual_seed(0)
    classes = 1 + len(CFG.world.shapes)
    cpu = VQGANSeg(CFG.tokenizer, num_classes=classes, init="random").eval()
    seg, vqgan = copy.deepcopy(cpu), VQGAN(CFG.tokenizer, init="random").eval()
    perceptual = copy.deepcopy(lpips_model("alex", "cpu"))  # the cached one stays on the CPU
    sketch = torch.randint(0, classes, (2, 2, 16, 16), generator=torch.Generator().manual_seed(0))
    loss = VQGANLoss(
        rec_loss="l2",
        perceptual_weight=0.1,
        perceptual=lambda a, b: lpips_distance(a, b, model=perceptual),
        gan_weight=0.1,
        disc_channels=8,
    )
    with fake_cuda:
        for module in (seg, vqgan, perceptual, loss):
            module.to("cuda")
        codes = seg.encode(sketch.to("cuda"))
        maps, logits = seg.decode(codes), seg(sketch[:, 0].to("cuda")).recon
        x = torch.rand(2, 3, 16, 16, device="cuda")
        out = vqgan(x)
        with torch.no_grad():  # so the adaptive weight is 1: it differentiates (no backward here)
            g_loss, logs = loss.generator_loss(out.recon, x, out.quant.loss, step=1)
        d_loss, _ = loss.discriminator_loss(out.recon, x, step=1)
    assert on_fake_cuda((codes, maps, logits, g_loss, d_loss))
    assert torch.equal(host(codes), cpu.encode(sketch))
    assert torch.equal(host(maps), cpu.decode(host(codes)))
    assert {"perceptual", "g_loss"} <= set(logs)


# ---- the tasks and their metrics ---------------------------------------------------------------


@pytest.fixture(scope="module")
def kit() -> TaskKit:
    torch.manual_seed(0)
    tok = VQGAN(CFG.tokenizer, init="random").eval()
    seg = VQGANSeg(CFG.tokenizer, num_classes=1 + len(CFG.world.shapes), init="random").eval()
    text = TextTokenizer.from_config(CFG.world, CFG.text)
    return TaskKit(CFG, ShapesWorld(CFG.world), tok, text, seg)


def tokenizers_copy(kit: TaskKit) -> Tokenizers:
    t = kit.tokenizers
    return Tokenizers(copy.deepcopy(t.visual), t.text, copy.deepcopy(t.sketch))


def moved(tokenizers: Tokenizers, device: str) -> Tokenizers:
    tokenizers.visual.to(device)
    tokenizers.sketch.to(device)
    return tokenizers


@pytest.mark.parametrize("inputs_on", ["cpu", "cuda"])
def test_every_tasks_tensors_on_fake_cuda_equal_the_cpu(inputs_on, kit, fake_cuda) -> None:
    """Raw inputs (on the CPU as the data sets give them, or already on the GPU) -> condition,
    fixed grid, given and target codes, all built on the model's device."""
    model, tokenizers = smoke_model(), tokenizers_copy(kit)
    items = {name: task_items(name, kit, "test", 2) for name in TASKS}
    fields = ("given_tokens", "target_tokens", "fixed")

    def tensors(t) -> list[torch.Tensor]:
        return [t.condition.tokens, *(getattr(t, f) for f in fields)]

    want = {
        name: tensors(
            task_tensors(name, model, items[name], tokenizers=kit.tokenizers, with_target=True)
        )
        for name in TASKS
    }
    got = {}
    with fake_cuda:
        model.to("cuda")
        moved(tokenizers, "cuda")
        for name in TASKS:
            inputs = items[name] if inputs_on == "cpu" else to_cuda(items[name])
            t = task_tensors(name, model, inputs, tokenizers=tokenizers, with_target=True)
            got[name] = tensors(t)
    for name in TASKS:
        assert on_fake_cuda(got[name]), name
        for a, b in zip(host(got[name]), want[name], strict=True):
            assert torch.equal(a, b), name
    assert ("to cpu", "tasks/run.py") not in {(d, s.split(":")[0]) for d, s in fake_cuda.copies}


def test_run_task_on_fake_cuda_equals_the_cpu(kit, fake_cuda) -> None:
    """I2I end to end: inputs -> fixed tokens -> the sampler (cached) -> the VQ-GAN decoder."""
    model, tokenizers = smoke_model(), tokenizers_copy(kit)
    inputs = task_items("i2i", kit, "test", 1)
    want = run_task("i2i", model, inputs, tokenizers=kit.tokenizers, generator=0)
    with fake_cuda:
        model.to("cuda")
        moved(tokenizers, "cuda")
        got = run_task("i2i", model, to_cuda(inputs), tokenizers=tokenizers, generator=0)
    assert (~got.fixed).sum() > 0 and torch.equal(got.tokens, want.tokens)
    torch.testing.assert_close(got.pixels, want.pixels)


def test_the_task_metrics_on_fake_cuda_equal_the_cpu(kit, fake_cuda) -> None:
    """Pixels generated on the GPU scored without a trip to the host first (the probes too)."""
    torch.manual_seed(0)
    probe, video_probe = (
        ImageProbe(world=CFG.world, channels=8),
        VideoProbe(world=CFG.world, channels=8),
    )
    i2i, v2v, ti2i, tv2v = (task_items(n, kit, "test", 2) for n in ("i2i", "v2v", "ti2i", "tv2v"))
    g = list(tv2v["given_frames"])

    def scores(cuda: bool) -> dict[str, object]:
        i, v, ti, tv = (to_cuda(x) if cuda else x for x in (i2i, v2v, ti2i, tv2v))
        return {
            "psnr": psnr(i["pixels"], i["pixels"] * 0.9),
            "ssim": ssim(v["pixels"][:, 0], v["pixels"][:, 1], window=7),
            "region": region_psnr(i["pixels"], i["pixels"] * 0.9, i2i["visible"]),  # a CPU mask
            "completion": completion_metrics(
                probe, i["pixels"] * 0.9, i["pixels"], i["visible"], asked_objects("i2i", i2i)
            ),
            "prediction": prediction_metrics(
                video_probe, v["pixels"] * 0.9, v["pixels"], 1, asked_objects("v2v", v2v)
            ),
            "edit_image": manipulation_metrics(
                probe,
                ti["target"],
                ti["pixels"],
                ti2i["objects"],
                ti2i["changed"],
                edit_region=ti["edit_region"],
            ),
            "edit_video": manipulation_metrics(
                video_probe,
                tv["target"],
                tv["pixels"],
                tv2v["objects"],
                tv2v["changed"],
                given_frames=g,
            ),
        }

    want = scores(cuda=False)
    with fake_cuda:
        probe.to("cuda")
        video_probe.to("cuda")
        got = scores(cuda=True)
    assert on_fake_cuda([got["psnr"], got["ssim"], got["region"]])
    torch.testing.assert_close(host(got), want, equal_nan=True)  # NaN: a frame without a score
