"""The vector quantizer: straight-through gradients, VQ loss terms, EMA, init, restarts, stats."""

from __future__ import annotations

import math

import pytest
import torch

from nuwa_lab.tokenizer.quantizer import VectorQuantizer, code_histogram_stats


def _quantizer(**kw) -> VectorQuantizer:
    args = dict(codebook_size=8, code_dim=4, beta=0.25, ema=False, dead_code_steps=0)
    return VectorQuantizer(**(args | kw))


def _initialised(q: VectorQuantizer, codes: torch.Tensor) -> VectorQuantizer:
    """Give `q` a known codebook and mark it initialised (no data-dependent init)."""
    with torch.no_grad():
        q.codebook.copy_(codes)
        q.embed_sum.copy_(codes)
        q.cluster_size.fill_(1.0)
        q.initialised.fill_(True)
    return q


def test_forward_picks_the_nearest_code() -> None:
    torch.manual_seed(0)
    q = _initialised(_quantizer(), torch.randn(8, 4)).eval()
    z = torch.randn(2, 4, 3, 5)
    out = q(z)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 4)
    brute = torch.cdist(flat, q.codebook.detach()).argmin(1).reshape(2, 3, 5)
    assert torch.equal(out.indices, brute)
    assert torch.allclose(out.z_q, q.codebook.detach()[brute].permute(0, 3, 1, 2))
    assert torch.equal(q.nearest(z), brute)


def test_straight_through_gives_the_encoder_the_decoder_gradient() -> None:
    torch.manual_seed(0)
    q = _initialised(_quantizer(), torch.randn(8, 4))
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    upstream = torch.randn(2, 4, 3, 3)  # the decoder's gradient dL/dz_q
    out = q(z)
    (grad,) = torch.autograd.grad((out.z_q * upstream).sum(), z)
    assert torch.allclose(grad, upstream)  # identity: dz_q/dz_e = I despite the argmin


def test_beta_weights_the_commitment_term_only() -> None:
    torch.manual_seed(0)
    beta = 0.3
    q = _initialised(_quantizer(beta=beta), torch.randn(8, 4))
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = q(z)
    gz, ge = torch.autograd.grad(out.loss, [z, q.codebook])
    e = q.codebook.detach()[out.indices].permute(0, 3, 1, 2)  # (b, d, h, w)
    n = z.numel()
    # d/dz [beta ||z - sg(e)||^2 / n] = 2 beta (z - e) / n ; the codebook term gives z no gradient
    assert torch.allclose(gz, 2 * beta * (z.detach() - e) / n, atol=1e-6)
    # d/de [||sg(z) - e||^2 / n] = 2 (e - z) / n summed over the vectors assigned to e: no beta
    flat_z = z.detach().permute(0, 2, 3, 1).reshape(-1, 4)
    idx = out.indices.flatten()
    expected = torch.zeros(8, 4).index_add_(0, idx, 2 * (q.codebook.detach()[idx] - flat_z) / n)
    assert torch.allclose(ge, expected, atol=1e-6)
    assert torch.allclose(out.loss, out.codebook_loss + beta * out.commitment)


def test_ema_codebook_follows_the_moving_average_and_gets_no_gradient() -> None:
    codes = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
    q = _initialised(
        _quantizer(codebook_size=2, code_dim=2, ema=True, ema_decay=0.5, init="random"), codes
    )
    assert not q.codebook.requires_grad
    z = torch.tensor([[1.0, 1.0], [3.0, 1.0], [9.0, 11.0]]).T.reshape(1, 2, 1, 3)
    out = q.train()(z)
    assert out.codebook_loss == 0
    # N = 0.5 * 1 + 0.5 * (2, 1) = (1.5, 1.0); m = 0.5 * codes + 0.5 * sums
    n = torch.tensor([1.5, 1.0])
    m = 0.5 * codes + 0.5 * torch.tensor([[4.0, 2.0], [9.0, 11.0]])
    smoothed = (n + q.eps) / (n.sum() + 2 * q.eps) * n.sum()
    assert torch.allclose(q.codebook.detach(), m / smoothed[:, None], atol=1e-4)
    assert torch.allclose(q.codebook[0], torch.tensor([4 / 3, 2 / 3]), atol=1e-3)  # (2, 1) / 1.5


def test_without_ema_the_optimiser_moves_codes_towards_their_vectors() -> None:
    torch.manual_seed(0)
    q = _initialised(
        _quantizer(codebook_size=2, code_dim=2), torch.tensor([[0.0, 0.0], [5.0, 5.0]])
    )
    z = torch.tensor([[1.0, 1.0], [4.0, 6.0]]).T.reshape(1, 2, 1, 2)
    opt = torch.optim.SGD([q.codebook], lr=1.0)
    before = (q.codebook.detach() - z.reshape(2, 2).T).norm()
    q.train()(z).loss.backward()
    opt.step()
    assert (q.codebook.detach() - z.reshape(2, 2).T).norm() < before


def test_eval_mode_changes_no_state() -> None:
    torch.manual_seed(0)
    q = _quantizer(ema=True, dead_code_steps=1).eval()
    state = {k: v.clone() for k, v in q.state_dict().items()}
    q(torch.randn(2, 4, 3, 3))
    for k, v in q.state_dict().items():
        assert torch.equal(v, state[k]), k


@pytest.mark.parametrize("init", ["kmeans++", "random"])
def test_data_dependent_init_puts_a_code_on_every_cluster(init: str) -> None:
    torch.manual_seed(0)
    centres = torch.randn(8, 4) * 10
    points = centres.repeat_interleave(16, 0) + 0.01 * torch.randn(128, 4)  # 8 tight clusters
    z = points.T.reshape(1, 4, 8, 16)
    q = _quantizer(init=init).train()  # no EMA step: the codes are exactly the init
    out = q(z)
    assert bool(q.initialised)
    # every code sits on the data (within a cluster), and k-means++ covers every cluster
    d = torch.cdist(q.codebook.detach(), centres).min(1).values
    assert (d < 0.5).all()
    if init == "kmeans++":
        assert out.usage == 1.0


def test_dead_code_restart_revives_unused_codes() -> None:
    torch.manual_seed(0)
    codes = torch.cat([torch.randn(4, 4), torch.full((4, 4), 100.0)])  # codes 4..7 far from data
    q = _initialised(_quantizer(ema=True, dead_code_steps=2, ema_decay=0.5), codes).train()
    z = torch.randn(4, 4, 4, 4)
    restarted = sum(q(z).restarted for _ in range(4))
    assert restarted >= 4
    assert (q.codebook.detach()[4:].abs() < 50).all()  # moved onto the data
    assert q.eval()(z).usage > 0.5  # the revived codes are used


def test_restarts_are_reproducible_from_the_state() -> None:
    torch.manual_seed(0)
    codes = torch.cat([torch.randn(4, 4), torch.full((4, 4), 100.0)])
    a = _initialised(_quantizer(ema=True, dead_code_steps=2, ema_decay=0.5), codes).train()
    b = _quantizer(ema=True, dead_code_steps=2, ema_decay=0.5).train()
    b.load_state_dict(a.state_dict())
    z = torch.randn(4, 4, 4, 4)
    for _ in range(3):
        torch.manual_seed(123)  # the global RNG differs between the two calls below ...
        a(z)
        torch.manual_seed(456)
        b(z)
    assert torch.equal(a.codebook, b.codebook)  # ... but restarts use the state's own generator


def test_usage_and_perplexity_of_known_assignments() -> None:
    usage, perplexity = code_histogram_stats(torch.tensor([5.0, 5.0, 0.0, 0.0]))
    assert usage == 0.5 and math.isclose(float(perplexity), 2.0, rel_tol=1e-6)
    usage, perplexity = code_histogram_stats(torch.tensor([3.0, 0.0, 0.0, 0.0]))
    assert usage == 0.25 and math.isclose(float(perplexity), 1.0, rel_tol=1e-6)
    # through forward: inputs exactly on codes 0, 1, 2 (twice each) -> usage 3/8, perplexity 3
    codes = torch.eye(8, 4) * 3 + torch.arange(8)[:, None] * 0.01
    q = _initialised(_quantizer(), codes).eval()
    z = codes[[0, 0, 1, 1, 2, 2]].T.reshape(1, 4, 2, 3)
    out = q(z)
    assert out.usage == 3 / 8 and math.isclose(float(out.perplexity), 3.0, rel_tol=1e-5)


def test_errors_name_the_problem() -> None:
    q = _quantizer()
    with pytest.raises(ValueError, match="code_dim"):
        q(torch.randn(1, 5, 2, 2))
    with pytest.raises(ValueError, match="codebook has 8 codes"):
        q.embed(torch.tensor([[[8]]]))
    with pytest.raises(ValueError, match="unknown init"):
        _quantizer(init="zeros")
