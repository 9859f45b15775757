"""Unit tests of solutions.ps07_info_bottleneck against independent oracles: scipy.stats.entropy,
sklearn.metrics.mutual_info_score, scipy.optimize (rate-distortion Lagrangian), brute force over binary
channels, closed forms (Bernoulli R(D), doubly symmetric binary source, Gaussian channel), the Hessian of
the IB Lagrangian by torch.autograd, counting with Python dicts, Monte Carlo, torch.distributions."""

import itertools
import math

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import scipy.special
import scipy.stats
import torch
import torch.nn.functional as F
from sklearn.metrics import mutual_info_score
from torch.distributions import Independent, LogNormal, Normal, kl_divergence

from coursekit.checks import assert_close, assert_true
from solutions import ps07_info_bottleneck as sol

DT = torch.float64


def _joint(n_x, n_y, seed):
    p = np.random.default_rng(seed).gamma(1.0, size=(n_x, n_y)) + 0.02
    return p / p.sum()


def _dsbs(eps):
    return np.array([[1 - eps, eps], [eps, 1 - eps]]) / 2


def _encoder(n_x, k, seed, spread=1.0):
    return scipy.special.softmax(spread * np.random.default_rng(seed).normal(size=(n_x, k)), axis=1)


def _ib_info(p_xy, enc):
    p_x = p_xy.sum(1)
    p_xt = p_x[:, None] * enc
    p_ty = enc.T @ p_xy
    return (scipy.stats.entropy(p_xt.ravel(), np.outer(p_x, p_xt.sum(0)).ravel()),
            scipy.stats.entropy(p_ty.ravel(), np.outer(p_ty.sum(1), p_xy.sum(0)).ravel()))


# ---------------------------------------------------------------- exercise 1
def test_entropy_kl_match_scipy():
    rng = np.random.default_rng(0)
    P, Q = rng.dirichlet(np.ones(6), size=(4, 3)), rng.dirichlet(np.ones(6), size=(4, 3))
    P[0, 0, :3] = 0
    P /= P.sum(-1, keepdims=True)
    assert_close(sol.entropy(P), scipy.stats.entropy(P, axis=-1), name="entropy")
    assert_close(sol.kl(P, Q), scipy.stats.entropy(P, Q, axis=-1), name="kl")


def test_mutual_information_matches_sklearn_contingency():
    for seed, shape in enumerate([(3, 4), (5, 2), (6, 6)]):
        counts = np.random.default_rng(seed).integers(0, 20, size=shape).astype(float)
        counts[0, 0] = 0
        assert_close(sol.mutual_information(counts / counts.sum()), mutual_info_score(None, None, contingency=counts),
                     name=f"I(X;Y) {shape}")


def test_blahut_arimoto_on_lagrangian_minimum():
    p_x = np.array([0.5, 0.3, 0.2])
    d = np.array([[0.0, 1.0, 2.0], [1.5, 0.0, 1.0], [1.0, 3.0, 0.0]])

    def lagr(theta, s):
        Q = scipy.special.softmax(theta.reshape(3, 3), axis=1)
        q = p_x @ Q
        return (p_x[:, None] * scipy.special.rel_entr(Q, q)).sum() + s * (p_x[:, None] * Q * d).sum()

    for s in [0.5, 1.0, 4.0]:
        D, R = sol.blahut_arimoto(p_x, d, s, 4000)
        best = min(scipy.optimize.minimize(lagr, np.random.default_rng(k).normal(size=9), args=(s,), method="BFGS",
                                           options={"gtol": 1e-10}).fun for k in range(4))
        if s >= 1.0:  # interior optimum: the softmax parametrisation reaches it
            assert_close(R + s * D, best, name=f"R + sD, s={s}", atol=1e-6)
        else:  # the optimum puts zero mass on an output, which a softmax only approaches
            assert_true(R + s * D <= best + 1e-9, f"s={s}: BA {R + s * D} worse than BFGS {best}")


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.85])
def test_bernoulli_rd_closed_form_vs_brute_force_and_ba(p):
    px = np.array([1 - p, p])
    for D in [0.01, 0.05, 0.6 * min(p, 1 - p)]:
        a = np.linspace(0, min(1.0, D / (1 - p)), 100001)
        b = (D - (1 - p) * a) / p
        ok = (b >= 0) & (b <= 1)
        Q = np.stack([np.stack([1 - a[ok], a[ok]], -1), np.stack([b[ok], 1 - b[ok]], -1)], axis=1)
        q = np.einsum("x,nxk->nk", px, Q)
        brute = (px[None, :, None] * scipy.special.rel_entr(Q, q[:, None, :])).sum((1, 2)).min()
        assert_close(sol.bernoulli_rate_distortion(p, np.array([D]))[0], brute, name=f"R({D})", atol=1e-6)
    # the Blahut-Arimoto point at slope s lies on the closed-form curve
    D, R = sol.blahut_arimoto(px, 1 - np.eye(2), 4.0, 3000)
    assert_close(sol.bernoulli_rate_distortion(p, np.array([D]))[0], R, name="BA point on R(D)", atol=1e-8)
    assert_close(sol.bernoulli_rate_distortion(p, np.array([0.0, min(p, 1 - p), 0.9])),
                 [scipy.stats.entropy([p, 1 - p]), 0.0, 0.0], name="R(0), R(Dmax), R(0.9)")


# ---------------------------------------------------------------- exercise 2
def test_iterative_ib_monotone_fixed_point_dpi():
    p = _joint(6, 3, 1)
    i_xy = scipy.stats.entropy(p.ravel(), np.outer(p.sum(1), p.sum(0)).ravel())
    for beta in [1.5, 5.0, 30.0]:
        q0 = _encoder(6, 4, 2)
        enc, lagr = sol.iterative_ib(p, beta, q0, 500)
        assert_true(np.diff(lagr).max() <= 1e-12, f"beta={beta}: L increased")
        i_xt, i_ty = _ib_info(p, enc)
        assert_close(lagr[-1], i_xt - beta * i_ty, name="last Lagrangian")
        assert_true(i_ty <= min(i_xy, i_xt) + 1e-12, "data processing")
        # fixed point of the self-consistent equations (written independently here)
        p_t = p.sum(1) @ enc
        p_y_t = enc.T @ p / p_t[:, None]
        dist = scipy.special.rel_entr((p / p.sum(1, keepdims=True))[:, None, :], p_y_t[None]).sum(-1)
        assert_close(scipy.special.softmax(np.log(p_t) - beta * dist, axis=1), enc, name="fixed point", atol=1e-6)


def test_iterative_ib_limits():
    p = _joint(5, 4, 3)
    enc, _ = sol.iterative_ib(p, 0.9, _encoder(5, 3, 4, spread=3.0), 400)
    assert_true(_ib_info(p, enc)[0] < 1e-8, "beta < 1: trivial encoder")
    enc, _ = sol.iterative_ib(p, 500.0, 0.9 * np.eye(5) + 0.02, 300)
    i_xy = scipy.stats.entropy(p.ravel(), np.outer(p.sum(1), p.sum(0)).ravel())
    assert_close(_ib_info(p, enc)[1], i_xy, name="I(T;Y) at large beta", atol=1e-4)
    assert_true(np.all(np.isfinite(sol.iterative_ib(p, 1e4, 0.9 * np.eye(5) + 0.02, 20)[0])), "no overflow")


# ---------------------------------------------------------------- exercise 3
def _hessian_threshold(p_xy):
    P = torch.as_tensor(p_xy, dtype=DT)
    px = P.sum(1)

    def mi(J):
        return (J * torch.log(J / (J.sum(1, keepdim=True) * J.sum(0, keepdim=True)))).sum()

    def info(u, which):
        enc = torch.stack([0.5 + u, 0.5 - u], dim=1)
        return mi(px[:, None] * enc) if which == 0 else mi(enc.T @ P)

    u0 = torch.zeros(P.shape[0], dtype=DT)
    HX = torch.autograd.functional.hessian(lambda u: info(u, 0), u0).numpy()
    HY = torch.autograd.functional.hessian(lambda u: info(u, 1), u0).numpy()
    n = P.shape[0]
    B = np.linalg.qr(np.eye(n) - 1.0 / n)[0][:, : n - 1]
    return 1.0 / scipy.linalg.eigh(B.T @ HY @ B, B.T @ HX @ B, eigvals_only=True).max()


@pytest.mark.parametrize("shape,seed", [((3, 3), 0), ((4, 2), 1), ((5, 4), 2), ((2, 6), 3)])
def test_ib_threshold_vs_autograd_hessian(shape, seed):
    p = _joint(*shape, seed)
    assert_close(sol.ib_threshold(p), _hessian_threshold(p), name="threshold", rtol=1e-6)


def test_ib_threshold_is_where_the_trivial_encoder_loses_stability():
    p = _joint(4, 3, 5)
    b = sol.ib_threshold(p)
    q0 = np.stack([0.5 + 1e-3 * np.random.default_rng(0).normal(size=4)] * 1, 1)
    q0 = np.concatenate([q0, 1 - q0], 1)
    below, _ = sol.iterative_ib(p, 0.95 * b, q0, 2000)
    above, _ = sol.iterative_ib(p, 1.05 * b, q0, 2000)
    assert_true(_ib_info(p, below)[0] < 1e-12, "below the threshold the perturbation decays")
    assert_true(_ib_info(p, above)[0] > 1e-4, "above the threshold the perturbation grows")


def test_ib_threshold_dsbs_and_independent():
    for eps in [0.05, 0.2, 0.4, 0.8]:
        assert_close(sol.ib_threshold(_dsbs(eps)), 1 / (1 - 2 * eps) ** 2, name=f"dsbs({eps})")
    assert_true(sol.ib_threshold(np.outer([0.2, 0.8], [0.5, 0.25, 0.25])) == math.inf, "independent")


@pytest.mark.parametrize("eps", [0.1, 0.2, 0.3])
def test_estimate_ib_transition_dsbs(eps):
    est = sol.estimate_ib_transition(_dsbs(eps), torch.Generator().manual_seed(0))
    target = 1 / (1 - 2 * eps) ** 2
    assert_true(abs(est - target) < 0.03 * target, f"estimate {est} vs {target}")


# ---------------------------------------------------------------- exercise 4
def test_binned_mi_vs_counting_and_sklearn():
    rng = np.random.default_rng(7)
    acts = np.tanh(2 * rng.normal(size=(400, 4)))
    labels = rng.integers(0, 3, size=400)
    for n_bins in [2, 10, 30]:
        lo, hi = acts.min(), acts.max()
        edges = np.linspace(lo, hi, n_bins + 1)
        idx = np.clip(np.digitize(acts, edges[1:-1]), 0, n_bins - 1)
        keys = {}
        t = np.array([keys.setdefault(tuple(r), len(keys)) for r in idx])
        counts = np.bincount(t) / len(t)
        I_xt, I_ty = sol.binned_mi(acts, labels, n_bins)
        assert_close(I_xt, scipy.stats.entropy(counts), name=f"I(X;T) {n_bins} bins")
        assert_close(I_ty, mutual_info_score(t, labels), name=f"I(T;Y) {n_bins} bins")


def test_binned_mi_saturation_and_relu_scale_invariance():
    x = np.random.default_rng(8).normal(size=(1000, 1))
    y = (x[:, 0] > 0).astype(np.int64)
    vals = [sol.binned_mi(np.tanh(w * x), y, 30)[0] for w in [1.0, 8.0, 64.0]]
    assert_true(vals[0] > vals[1] > vals[2], f"tanh saturation {vals}")
    assert_close(sol.binned_mi(np.maximum(16 * x, 0), y, 30), sol.binned_mi(np.maximum(x, 0), y, 30), name="relu")
    assert_close(sol.binned_mi(np.ones((5, 2)), np.arange(5), 30), [0.0, 0.0], name="constant layer")


# ---------------------------------------------------------------- exercise 5
def _mc_mi(h, s2, n, seed):
    rng = np.random.default_rng(seed)
    N = h.shape[0]
    i = rng.integers(0, N, n)
    t = h[i] + math.sqrt(s2) * rng.normal(size=(n, h.shape[1]))
    lk = -((t[:, None] - h[None]) ** 2).sum(-1) / (2 * s2)
    v = lk[np.arange(n), i] - (scipy.special.logsumexp(lk, axis=1) - math.log(N))
    return v.mean(), v.std() / math.sqrt(n)


@pytest.mark.parametrize("s2", [0.05, 0.5, 3.0])
def test_kde_upper_bounds_monte_carlo(s2):
    h = torch.randn(25, 2, generator=torch.Generator().manual_seed(9), dtype=DT)
    mi, se = _mc_mi(h.numpy(), s2, 40000, 0)
    ub = float(sol.kde_mi_upper(h, s2))
    assert_true(mi <= ub + 3 * se, f"MC {mi} +- {se} > bound {ub}")
    # the Bhattacharyya (Chernoff-1/2) lower bound of Kolchinsky & Tracey, written independently
    d2 = ((h[:, None] - h[None]) ** 2).sum(-1).numpy()
    lb = -(scipy.special.logsumexp(-d2 / (8 * s2), axis=1) - math.log(25)).mean()
    assert_true(lb - 3 * se <= mi, "MC below the lower bound")


def test_kde_limits_and_gaussian_limit():
    h = torch.tensor([[0.0], [100.0], [200.0]], dtype=DT)
    assert_close(sol.kde_mi_upper(h, 1.0), math.log(3), name="separated")
    assert_close(sol.kde_mi_upper(h, 1e10), 0.0, name="huge noise", atol=1e-5)
    g = torch.Generator().manual_seed(10)
    A = torch.randn(2, 2, generator=g, dtype=DT)
    M = 0.5 * A @ A.T
    vals = []
    for k in range(4):
        h = torch.randn(1500, 2, generator=g, dtype=DT) @ torch.linalg.cholesky(M).T
        vals.append(float(sol.kde_mi_upper(h, 1.0)))
    I2 = torch.eye(2, dtype=DT)
    limit = 0.5 * torch.logdet(I2 + M) + 0.5 * torch.trace(M @ torch.linalg.inv(M + I2))
    assert_close(np.mean(vals), limit, name="large-N limit", atol=0.03)


def test_kde_gradient_matches_finite_differences():
    h = torch.randn(6, 2, generator=torch.Generator().manual_seed(11), dtype=DT, requires_grad=True)
    assert_true(torch.autograd.gradcheck(lambda x: sol.kde_mi_upper(x, 0.7), (h,)), "gradcheck")


# ---------------------------------------------------------------- exercise 6
def test_gaussian_kl_and_vib_loss_vs_torch_distributions():
    g = torch.Generator().manual_seed(12)
    mu, lv = torch.randn(7, 3, generator=g, dtype=DT), torch.randn(7, 3, generator=g, dtype=DT)
    ref = kl_divergence(Independent(Normal(mu, (0.5 * lv).exp()), 1),
                        Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1))
    assert_close(sol.gaussian_kl(mu, lv), ref, name="gaussian_kl")
    logits, y = torch.randn(7, 4, generator=g, dtype=DT), torch.randint(0, 4, (7,), generator=g)
    assert_close(sol.vib_loss(mu, lv, logits, y, 0.3), F.cross_entropy(logits, y) + 0.3 * ref.mean(), name="vib")


def test_vib_kl_upper_bounds_gaussian_channel_information():
    g = torch.Generator().manual_seed(13)
    W = torch.randn(2, 3, generator=g, dtype=DT)
    S = torch.eye(3, dtype=DT) * 0.7
    x = torch.randn(20000, 3, generator=g, dtype=DT) @ torch.linalg.cholesky(S).T
    kl = sol.gaussian_kl(x @ W.T, torch.full((20000, 2), math.log(0.5), dtype=DT)).mean()
    mi = 0.5 * torch.logdet(torch.eye(2, dtype=DT) + W @ S @ W.T / 0.5)
    assert_true(float(kl) > float(mi), "KL bound")


def test_info_dropout_kl_vs_torch_and_monte_carlo():
    g = torch.Generator().manual_seed(14)
    lf, al = torch.randn(3, 4, generator=g, dtype=DT), torch.rand(3, 4, generator=g, dtype=DT) + 0.1
    ref = kl_divergence(LogNormal(lf, al), LogNormal(torch.full_like(lf, 0.2), torch.full_like(lf, 0.9)))
    assert_close(sol.info_dropout_kl(lf, al, 0.2, 0.9), ref, name="info_dropout_kl vs torch")
    rng = np.random.default_rng(0)
    for m, a in itertools.product([-0.5, 1.0], [0.3, 1.5]):
        z = np.exp(m + a * rng.normal(size=200000))
        v = scipy.stats.lognorm(s=a, scale=math.exp(m)).logpdf(z) - scipy.stats.lognorm(s=0.9, scale=math.exp(0.2)).logpdf(z)
        val = float(sol.info_dropout_kl(torch.tensor(m, dtype=DT), torch.tensor(a, dtype=DT), 0.2, 0.9))
        assert_true(abs(val - v.mean()) < 4 * v.std() / math.sqrt(len(v)) + 1e-3, f"MC {m}, {a}")
