"""Every efficient attention path equals the dense oracle (outputs and gradients), and causal paths
never see the future. Random grids, patterns and options come from hypothesis."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nuwa_lab.attention import PATTERNS, attend
from nuwa_lab.attention.api import AUTO_MASKED_PAIRS
from nuwa_lab.attention.masks import make_spec
from nuwa_lab.attention.nearby import nearby_attend

TOL = dict(atol=1e-5, rtol=1e-5)
axis = st.integers(1, 5)
grids = st.tuples(axis, axis, axis)


@st.composite
def problems(draw):
    """Arguments of `attend` plus tensor sizes: self or cross, causal or not, some q_positions."""
    q_grid = draw(grids)
    cross = draw(st.booleans())
    kv_grid = draw(grids) if cross else None
    causal = (not cross) and draw(st.booleans())
    kwargs = dict(
        pattern=draw(st.sampled_from(PATTERNS)),
        q_grid=q_grid,
        kv_grid=kv_grid,
        causal=causal,
        extent=draw(st.tuples(*[st.integers(0, 3)] * 3)),  # up to 7 wide: often wider than the grid
        block=draw(st.tuples(*[st.integers(1, 4)] * 3)),
        causal_rule=draw(st.sampled_from(("raster", "quadrant"))),
        border=draw(st.sampled_from(("truncate", "shift"))),
    )
    n_q = q_grid[0] * q_grid[1] * q_grid[2]
    n_k = n_q if kv_grid is None else kv_grid[0] * kv_grid[1] * kv_grid[2]
    if draw(st.booleans()):
        positions = draw(st.lists(st.integers(0, n_q - 1), min_size=1, max_size=4))
        kwargs["q_positions"] = torch.tensor(positions)
        n_q = len(positions)
        if causal and draw(st.booleans()):  # a KV cache holding only the prefix seen so far
            n_k = max(positions) + 1
    return kwargs, n_q, n_k


def tensors(n_q, n_k, seed, e=4, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (
        torch.randn(2, 2, n, e, generator=g, dtype=dtype).requires_grad_() for n in (n_q, n_k, n_k)
    )
    return q, k, v


def outputs_and_grads(q, k, v, backend, kwargs):
    out = attend(q, k, v, backend=backend, **kwargs)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    grads = torch.autograd.grad((out * weights).sum(), (q, k, v))
    return out, grads


# "auto" on these small problems runs nearby as the oracle's mask in SDPA (the masked path; the
# other sparse patterns up to 64 x 64 pairs), and the efficient paths beyond
@pytest.mark.parametrize("backend", ("efficient", "auto"))
@settings(max_examples=70, deadline=None)
@given(problems(), st.integers(0, 2**16))
def test_efficient_and_auto_paths_equal_the_dense_oracle(backend, problem, seed):
    kwargs, n_q, n_k = problem
    assert n_q * n_k <= AUTO_MASKED_PAIRS["nearby"]
    q, k, v = tensors(n_q, n_k, seed)
    out, grads = outputs_and_grads(q, k, v, backend, kwargs)
    ref, ref_grads = outputs_and_grads(q, k, v, "dense", kwargs)
    torch.testing.assert_close(out, ref, **TOL)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, **TOL)


@settings(max_examples=40, deadline=None)
@given(problems(), st.integers(0, 2**16))
def test_q_positions_give_the_rows_of_the_whole_computation(problem, seed):
    kwargs, _, _ = problem
    kwargs.pop("q_positions", None)
    n_q = kwargs["q_grid"][0] * kwargs["q_grid"][1] * kwargs["q_grid"][2]
    grid = kwargs["kv_grid"] or kwargs["q_grid"]
    q, k, v = tensors(n_q, grid[0] * grid[1] * grid[2], seed)
    whole = attend(q, k, v, **kwargs)
    positions = torch.arange(n_q).flip(0)[: max(1, n_q // 2)]
    some = attend(q[:, :, positions], k, v, q_positions=positions, **kwargs)
    torch.testing.assert_close(some, whole[:, :, positions], **TOL)


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("rule", ("raster", "quadrant"))
@pytest.mark.parametrize("border", ("truncate", "shift"))
def test_causal_paths_do_not_see_the_future(pattern, rule, border):
    grid = (3, 4, 5)
    n = 60
    q, k, v = (x.detach() for x in tensors(n, n, seed=1))
    kwargs = dict(pattern=pattern, q_grid=grid, causal=True, extent=(1, 2, 1), block=(2, 2, 3),
                  causal_rule=rule, border=border)  # fmt: skip
    later = 37
    k2, v2 = k.clone(), v.clone()
    k2[:, :, later] += 5.0
    v2[:, :, later] -= 5.0
    for backend in ("efficient", "dense", "auto"):
        before = attend(q, k, v, backend=backend, **kwargs)
        after = attend(q, k2, v2, backend=backend, **kwargs)
        assert torch.equal(before[:, :, :later], after[:, :, :later]), backend
        assert not torch.equal(before[:, :, later], after[:, :, later])  # the token sees itself


@pytest.mark.parametrize("pattern", PATTERNS)
def test_decoding_with_a_growing_cache_matches_the_whole_sequence(pattern):
    grid = (2, 3, 4)
    n = 24
    q, k, v = (x.detach() for x in tensors(n, n, seed=2))
    kwargs = dict(pattern=pattern, q_grid=grid, causal=True, block=(1, 2, 2))
    whole = attend(q, k, v, **kwargs)
    steps = [
        attend(q[:, :, i : i + 1], k[:, :, : i + 1], v[:, :, : i + 1], q_positions=[i], **kwargs)
        for i in range(n)
    ]
    torch.testing.assert_close(torch.cat(steps, dim=2), whole, **TOL)


def test_float64_paths_agree_to_rounding():
    q, k, v = tensors(4 * 6 * 6, 4 * 6 * 6, seed=3, e=8, dtype=torch.float64)
    for pattern in PATTERNS:
        kwargs = dict(pattern=pattern, q_grid=(4, 6, 6), causal=True, extent=(1, 2, 2))
        out, grads = outputs_and_grads(q, k, v, "efficient", kwargs)
        ref, ref_grads = outputs_and_grads(q, k, v, "dense", kwargs)
        torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)
        for g, r in zip(grads, ref_grads, strict=True):  # the hand-written backward, to rounding
            torch.testing.assert_close(g, r, atol=1e-12, rtol=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    grids,
    st.tuples(*[st.integers(0, 3)] * 3),
    st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6)),
    st.booleans(),
    st.integers(0, 2**16),
)
def test_nearby_equals_the_oracle_for_any_tile(grid, extent, tile, causal, seed):
    """Tiles need not divide the grid: edge tiles are smaller, their padding masked."""
    n = grid[0] * grid[1] * grid[2]
    q, k, v = tensors(n, n, seed)
    spec = make_spec("nearby", grid, None, causal, extent=extent)
    out = nearby_attend(q, k, v, spec, tile=tile)
    weights = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
    grads = torch.autograd.grad((out * weights).sum(), (q, k, v))
    kwargs = dict(pattern="nearby", q_grid=grid, causal=causal, extent=extent)
    ref, ref_grads = outputs_and_grads(q, k, v, "dense", kwargs)
    torch.testing.assert_close(out, ref, **TOL)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, **TOL)


@pytest.mark.slow  # ~7-15 s: the first FlexAttention call sets up dynamo and vmap
def test_flex_backend_equals_the_dense_oracle_forward():
    from nuwa_lab.attention.flex import flex_attend, flex_status
    from nuwa_lab.attention.masks import make_spec

    if flex_status():
        pytest.skip(flex_status())
    q, k, v = (x.detach() for x in tensors(24, 24, seed=4))
    for pattern in PATTERNS:
        spec = make_spec(pattern, (2, 3, 4), None, True, extent=(1, 1, 1), block=(1, 2, 2))
        kwargs = dict(pattern=pattern, q_grid=(2, 3, 4), causal=True, block=(1, 2, 2))
        ref = attend(q, k, v, backend="dense", **kwargs)
        # uncompiled: compiling on CPU takes about a minute (the benchmark measures it)
        torch.testing.assert_close(flex_attend(q, k, v, spec, compiled=False), ref, **TOL)
    positions = torch.tensor([3, 7])
    spec = make_spec("nearby", (2, 3, 4), None, True)
    out = flex_attend(q[:, :, :2], k[:, :, :8], v[:, :, :8], spec, positions, compiled=False)
    ref = attend(q[:, :, :2], k[:, :, :8], v[:, :, :8], pattern="nearby", q_grid=(2, 3, 4),
                 causal=True, q_positions=positions, backend="dense")  # fmt: skip
    torch.testing.assert_close(out, ref, **TOL)


def test_flex_backend_refuses_gradients_on_cpu_with_a_clear_message():
    q, k, v = tensors(8, 8, seed=5)
    with pytest.raises(RuntimeError, match="no backward pass on CPU"):
        attend(q, k, v, pattern="full", q_grid=(2, 2, 2), backend="flex")


@pytest.mark.parametrize("causal", (True, False))
def test_masked_path_slices_keys_per_query_frame_and_equals_the_oracle(causal):
    from nuwa_lab.attention.dense import frame_bands, masked_sdpa_attend
    from nuwa_lab.attention.masks import make_spec

    grid = (4, 8, 8)  # the tiny preset's video grid
    spec = make_spec("nearby", grid, None, causal, extent=(1, 3, 3))
    bands = frame_bands(spec, spec.n_kv, "cpu")
    frame = 8 * 8
    # query frame t sees keys of frames t-1..t (..t+1 without causality): at most 2 (3) frames
    assert [(a, b) for a, b, *_ in bands] == [(t * frame, (t + 1) * frame) for t in range(4)]
    assert max(hi - lo for _, _, lo, hi, _ in bands) <= (2 if causal else 3) * frame
    q, k, v = tensors(spec.n_q, spec.n_kv, seed=3)
    out = masked_sdpa_attend(q, k, v, spec)
    weights = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
    grads = torch.autograd.grad((out * weights).sum(), (q, k, v))
    ref, ref_grads = outputs_and_grads(q, k, v, "dense", dict(
        pattern="nearby", q_grid=grid, causal=causal, extent=(1, 3, 3)))  # fmt: skip
    torch.testing.assert_close(out, ref, **TOL)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, **TOL)
    # an image grid (one frame) has nothing to slice: one call over all keys
    assert (
        frame_bands(make_spec("nearby", (1, 8, 8), None, causal, extent=(0, 3, 3)), 64, "cpu")
        is None
    )


@pytest.mark.parametrize("causal", (True, False))
@pytest.mark.parametrize("dtype", (torch.float32, torch.float64))
def test_masked_path_on_the_model_s_strided_heads_equals_the_oracle(causal, dtype):
    # in the model q, k, v are strided views of one projection (chunk + split into heads) and the
    # gradient arrives strided too; fp32 on the CPU runs the bands as one autograd node
    # (`dense._FrameBands`), other dtypes slice the keys: both must equal the oracle
    from nuwa_lab.attention.dense import masked_sdpa_attend
    from nuwa_lab.attention.masks import make_spec

    grid, heads, e = (4, 8, 8), 2, 8
    spec = make_spec("nearby", grid, None, causal, extent=(1, 3, 3))
    g = torch.Generator().manual_seed(11)
    qkv = torch.randn(3, spec.n_q, 3 * heads * e, generator=g, dtype=dtype, requires_grad=True)

    def heads_of(x):  # (b, n, heads * e) -> (b, heads, n, e), a view
        return x.unflatten(-1, (heads, e)).transpose(1, 2)

    def run(fn):
        q, k, v = (heads_of(t) for t in qkv.chunk(3, dim=-1))
        out = fn(q, k, v)
        upstream = torch.randn(3, spec.n_q, heads * e, generator=torch.Generator().manual_seed(2),
                               dtype=dtype)  # fmt: skip
        (grad,) = torch.autograd.grad(out, qkv, heads_of(upstream))  # a strided gradient
        return out, grad

    out, grad = run(lambda q, k, v: masked_sdpa_attend(q, k, v, spec))
    assert ("_FrameBands" in type(out.grad_fn).__name__) == (dtype == torch.float32)
    pattern = dict(pattern="nearby", q_grid=grid, causal=causal, extent=(1, 3, 3))
    ref, ref_grad = run(lambda q, k, v: attend(q, k, v, backend="dense", **pattern))
    torch.testing.assert_close(out, ref, **TOL)
    torch.testing.assert_close(grad, ref_grad, **TOL)
