"""Unit tests of solutions.ps05_csc against independent oracles: scikit-learn's Lasso, cvxpy (the Lasso dual),
scipy.optimize (bounded scalar maximisation, L-BFGS-B), torch.nn.functional convolutions, torch.autograd, brute force
over atoms, patches and sign patterns, an exact per-trial computation of the thresholding success interval, and
parameter counts of torch.nn modules."""

import math
import warnings

import cvxpy as cp
import numpy as np
import pytest
import scipy.optimize
import torch
import torch.nn.functional as F
from sklearn.linear_model import Lasso

from coursekit.checks import assert_close, assert_true
from solutions import ps05_csc as sol

DT = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _objective(D, x, lam, g):
    r = x - D @ g
    return float(0.5 * (r @ r) + lam * g.abs().sum())


def _sk_lasso(D, x, lam):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = Lasso(alpha=lam / D.shape[0], fit_intercept=False, tol=1e-14, max_iter=1_000_000)
        return torch.tensor(m.fit(D.numpy(), x.numpy()).coef_, dtype=DT)


def _dense_conv_dictionary(filters, N):
    f = filters.numpy()
    m, c, n = f.shape
    cols = []
    for j in range(m):
        base = np.zeros((c, N))
        base[:, :n] = f[j]
        cols += [np.roll(base, i, axis=1).reshape(-1) for i in range(N)]
    return torch.tensor(np.stack(cols, axis=1))


def _circ_conv1d(x, filters):
    return F.conv1d(F.pad(x, (0, filters.shape[-1] - 1), mode="circular"), filters)


FILTERS_A = torch.tensor([
    [0.214, 0.263, 0.081, 0.176, 0.123, -0.406, 0.198, -0.212, -0.116, 0.56, 0.035, -0.113, 0.081, 0.349, 0.239, 0.236],
    [0.283, -0.219, 0.235, -0.338, -0.29, -0.174, -0.339, -0.135, 0.145, 0.064, -0.076, 0.001, 0.348, -0.043, -0.341, -0.43],
], dtype=DT).reshape(2, 1, 16)
FILTERS_A = FILTERS_A / FILTERS_A.reshape(2, -1).norm(dim=1)[:, None, None]


# ---------------------------------------------------------------- exercise 1
def test_soft_threshold_is_the_prox_of_l1():
    v = torch.linspace(-3, 3, 41, dtype=DT)
    for t in (0.0, 0.7):
        ref = [scipy.optimize.minimize_scalar(lambda z, a=float(a): 0.5 * (z - a) ** 2 + t * abs(z),
                                              bounds=(-4, 4), method="bounded", options={"xatol": 1e-12}).x
               for a in v]
        assert_close(sol.soft_threshold(v, t), np.array(ref), atol=1e-8, name="prox")


@pytest.mark.parametrize("alg", ["ista", "fista"])
@pytest.mark.parametrize("shape,lam", [((20, 30), 2.0), ((15, 10), 0.3), ((8, 40), 0.1)])
def test_ista_fista_reach_sklearn_lasso(alg, shape, lam):
    g = _gen(sum(shape))
    D = torch.randn(*shape, generator=g, dtype=DT)
    x = torch.randn(shape[0], generator=g, dtype=DT)
    traj = getattr(sol, alg)(D, x, lam, 6000)
    assert traj.shape == (6001, shape[1])
    assert_close(_objective(D, x, lam, traj[-1]), _objective(D, x, lam, _sk_lasso(D, x, lam)), rtol=1e-8, atol=1e-10,
                 name=f"{alg} objective")


def test_ista_is_proximal_gradient_with_autograd_gradient():
    g = _gen(3)
    D = torch.randn(7, 11, generator=g, dtype=DT)
    x = torch.randn(7, generator=g, dtype=DT)
    g0 = torch.randn(11, generator=g, dtype=DT)
    traj = sol.ista(D, x, 0.4, 5, g0)
    L = float(np.linalg.norm(D.numpy(), 2) ** 2)
    z = g0.clone()
    for k in range(5):
        zz = z.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(0.5 * ((x - D @ zz) ** 2).sum(), zz)
        v = (z - grad / L).numpy()
        # prox step as a minimisation solved by scipy, coordinate by coordinate
        z = torch.tensor([scipy.optimize.minimize_scalar(lambda t, a=a: 0.5 * (t - a) ** 2 + 0.4 / L * abs(t),
                                                         bounds=(-10, 10), method="bounded",
                                                         options={"xatol": 1e-13}).x for a in v], dtype=DT)
        assert_close(traj[k + 1], z, atol=1e-8, name=f"ISTA iterate {k + 1}")


def test_rate_bounds_on_ill_conditioned_instance():
    g = _gen(11)
    U, _ = torch.linalg.qr(torch.randn(30, 30, generator=g, dtype=DT))
    V, _ = torch.linalg.qr(torch.randn(50, 30, generator=g, dtype=DT))
    D = U @ torch.diag(torch.logspace(0, -1.5, 30, dtype=DT)) @ V.T
    x = D @ torch.randn(50, generator=g, dtype=DT) + 0.01 * torch.randn(30, generator=g, dtype=DT)
    lam, T = 0.01, 500
    gs = _sk_lasso(D, x, lam)
    Fs = _objective(D, x, lam, gs)
    L = float(torch.linalg.matrix_norm(D, 2) ** 2)
    R2 = float(gs @ gs)
    k = np.arange(1, T + 1)
    gi = np.array([_objective(D, x, lam, v) for v in sol.ista(D, x, lam, T)])[1:] - Fs
    gf = np.array([_objective(D, x, lam, v) for v in sol.fista(D, x, lam, T)])[1:] - Fs
    assert_true(bool(np.all(gi <= L * R2 / (2 * k))), "ISTA bound")
    assert_true(bool(np.all(gf <= 2 * L * R2 / (k + 1) ** 2)), "FISTA bound")
    assert_true(bool(np.any(gi > 2 * L * R2 / (k + 1) ** 2)), "ISTA is slower than FISTA's bound on this instance")


def test_duality_gap_matches_cvxpy_dual_and_bounds_suboptimality():
    g = _gen(5)
    D = torch.randn(10, 16, generator=g, dtype=DT)
    x = torch.randn(10, generator=g, dtype=DT)
    lam = 0.6
    # the dual problem solved by cvxpy: max x^T nu - 1/2 ||nu||^2 s.t. ||D^T nu||_inf <= lam; its value is F*
    nu = cp.Variable(10)
    dual = cp.Problem(cp.Maximize(x.numpy() @ nu - 0.5 * cp.sum_squares(nu)), [cp.norm_inf(D.numpy().T @ nu) <= lam])
    dual.solve()
    Fs = _objective(D, x, lam, _sk_lasso(D, x, lam))
    assert_close(dual.value, Fs, rtol=1e-6, name="strong duality: dual value = F*")
    for _ in range(10):
        gamma = torch.randn(16, generator=g, dtype=DT) * 0.5
        r = (x - D @ gamma).numpy()
        s = cp.Variable()
        best = cp.Problem(cp.Maximize(x.numpy() @ r * s - 0.5 * (r @ r) * cp.square(s)),
                          [cp.abs(s) * np.abs(D.numpy().T @ r).max() <= lam])
        best.solve()
        gap = float(sol.lasso_duality_gap(D, x, lam, gamma))
        assert_close(gap, _objective(D, x, lam, gamma) - best.value, rtol=1e-6, atol=1e-8, name="gap vs cvxpy")
        assert_true(gap >= _objective(D, x, lam, gamma) - Fs - 1e-9, "weak duality")
    assert_close(sol.lasso_duality_gap(D, x, lam, _sk_lasso(D, x, lam)), 0.0, atol=1e-8, name="gap at optimum")


def test_dictionary_learning_recovers_planted_dictionary():
    g = _gen(0)
    D0 = torch.randn(16, 16, generator=g, dtype=DT)
    D0 = D0 / D0.norm(dim=0)
    idx = torch.rand(600, 16, generator=g).argsort(dim=1)[:, :2]
    vals = (1 + torch.rand(600, 2, generator=g, dtype=DT)) * torch.sign(torch.randn(600, 2, generator=g, dtype=DT))
    X = torch.zeros(600, 16, dtype=DT).scatter_(1, idx, vals) @ D0.T
    fr = []
    for seed in range(3):
        D = sol.dictionary_learning(X, 16, 0.5, 30, _gen(seed))
        assert_close(D.norm(dim=0), torch.ones(16, dtype=DT), name="unit atoms")
        fr.append(float(((D0.T @ D).abs().max(dim=1).values > 0.95).to(DT).mean()))
    assert_true(sum(f >= 0.8 for f in fr) >= 2, f"recovered fractions {fr}")


# ---------------------------------------------------------------- exercise 2
@pytest.mark.parametrize("m,c,n,N", [(3, 2, 5, 11), (1, 1, 4, 4), (2, 3, 1, 6)])
def test_conv_dictionary_matches_torch_convolutions(m, c, n, N):
    g = _gen(m + c + n + N)
    f = torch.randn(m, c, n, generator=g, dtype=DT)
    D = sol.conv_dictionary(f, N)
    assert_close(D, _dense_conv_dictionary(f, N), name="vs np.roll construction")
    x = torch.randn(c, N, generator=g, dtype=DT)
    assert_close(D.T @ x.reshape(-1), _circ_conv1d(x[None], f)[0].reshape(-1), name="D^T x vs conv1d")
    Gam = torch.randn(m, N, generator=g, dtype=DT)
    full = F.conv_transpose1d(Gam[None], f)[0]
    wrapped = full[:, :N].clone()
    wrapped[:, : n - 1] += full[:, N:]
    assert_close(D @ Gam.reshape(-1), wrapped.reshape(-1), name="D Gamma vs conv_transpose1d")


def test_mutual_coherence_brute_force():
    g = _gen(7)
    D = torch.randn(6, 9, generator=g, dtype=DT) * torch.linspace(0.2, 4, 9, dtype=DT)
    Dn = D.numpy()
    best = max(abs(Dn[:, i] @ Dn[:, j]) / np.linalg.norm(Dn[:, i]) / np.linalg.norm(Dn[:, j])
               for i in range(9) for j in range(9) if i != j)
    assert_close(sol.mutual_coherence(D), best, name="coherence")


@pytest.mark.parametrize("m,c,n", [(2, 1, 16), (3, 2, 5), (1, 1, 6), (5, 3, 2)])
def test_conv_coherence_equals_dense_coherence_for_all_large_N(m, c, n):
    f = torch.randn(m, c, n, generator=_gen(m * n), dtype=DT)
    val = sol.conv_coherence(f)
    for N in (2 * n - 1, 2 * n + 3, 4 * n):
        assert_close(val, sol.mutual_coherence(_dense_conv_dictionary(f, N)), name=f"N={N}")


def test_conv_coherence_respects_welch_type_lower_bound():
    # the atoms of one stripe live in a space of dimension (2n - 1) c: Welch's bound for m (2n - 1) vectors there
    g = _gen(8)
    for m, n in [(2, 16), (3, 8), (4, 5)]:
        for _ in range(20):
            f = torch.randn(m, 1, n, generator=g, dtype=DT)
            assert_true(float(sol.conv_coherence(f)) >= math.sqrt((m - 1) / (m * (2 * n - 1) - 1)) - 1e-12, "Welch")


def test_stripe_norm_brute_force():
    g = _gen(9)
    for m, N, n, p in [(3, 20, 4, 0.15), (1, 9, 5, 0.3), (2, 30, 7, 0.05), (2, 7, 1, 0.5)]:
        Gam = torch.randn(m, N, generator=g, dtype=DT) * (torch.rand(m, N, generator=g) < p)
        D = _dense_conv_dictionary(torch.ones(m, 1, n, dtype=DT), N).numpy()   # atom supports
        best = 0
        for i in range(N):
            rows = [(i + t) % N for t in range(n)]
            overlapping = np.flatnonzero(np.abs(D[rows]).sum(axis=0) > 0)
            best = max(best, int((Gam.reshape(-1).numpy()[overlapping] != 0).sum()))
        assert sol.stripe_norm(Gam, n) == best


# ---------------------------------------------------------------- exercise 3
def test_layered_thresholding_is_a_cnn_forward_pass():
    g = _gen(10)
    N = 12
    Ws = [torch.randn(3, 1, 4, generator=g, dtype=DT), torch.randn(5, 3, 3, generator=g, dtype=DT)]
    bs = [0.3 * torch.randn(w.shape[0], generator=g, dtype=DT) for w in Ws]
    X = torch.randn(4, N, generator=g, dtype=DT)
    layers = [torch.nn.Conv1d(w.shape[1], w.shape[0], w.shape[2], padding=(0, ), dtype=DT) for w in Ws]
    h = X[:, None]
    out = sol.layered_thresholding(X, [sol.conv_dictionary(w, N) for w in Ws], [b.repeat_interleave(N) for b in bs])
    for i, (layer, w, b) in enumerate(zip(layers, Ws, bs)):
        with torch.no_grad():
            layer.weight.copy_(w)
            layer.bias.copy_(b)
            h = torch.relu(layer(F.pad(h, (0, w.shape[-1] - 1), mode="circular")))
        assert_close(out[i], h.reshape(4, -1), name=f"layer {i + 1} vs torch.nn.Conv1d + ReLU")


def _adversarial(mu, k):
    G = -mu * np.ones((k + 1, k + 1))
    G[k, :] = G[:, k] = mu
    np.fill_diagonal(G, 1.0)
    w, V = np.linalg.eigh(G)
    return (V * np.sqrt(np.clip(w, 0, None))).T


def test_threshold_interval_is_the_exact_worst_case():
    # brute force: over all admissible extreme coefficient vectors (entries gmin or gmax) on the adversarial atoms,
    # the set of working thresholds is exactly [lo, hi)
    for mu, k, gmin, gmax in [(0.1, 2, 1.0, 2.0), (0.05, 3, 0.5, 1.0), (0.02, 1, 1.0, 4.0)]:
        A = _adversarial(mu, k)
        lo, hi = sol.threshold_interval(mu, k, gmin, gmax)
        worst_on, worst_off = math.inf, -math.inf
        for bits in range(2 ** k):
            coef = np.array([gmax if (bits >> i) & 1 else gmin for i in range(k)])
            corr = A.T @ (A[:, :-1] @ coef)
            worst_on, worst_off = min(worst_on, corr[:-1].min()), max(worst_off, corr[-1])
        assert_close([lo, hi], [worst_off, worst_on], name="interval vs brute force")


def test_threshold_interval_guarantee_on_random_dictionaries():
    g = _gen(11)
    checked = 0
    for _ in range(300):
        A = torch.randn(300, 30, generator=g, dtype=DT)
        A = (A / A.norm(dim=0)).numpy()
        mu = np.abs(A.T @ A - np.eye(30)).max()
        lo, hi = sol.threshold_interval(mu, 2, 1.0, 1.5)
        if lo >= hi:
            continue
        supp = torch.randperm(30, generator=g)[:2].numpy()
        coef = np.zeros(30)
        coef[supp] = 1 + 0.5 * torch.rand(2, generator=g, dtype=DT).numpy()
        for beta in np.linspace(lo, hi, 5, endpoint=False):
            assert set(np.flatnonzero(np.maximum(A.T @ (A @ coef) - beta, 0))) == set(supp)
        checked += 1
    assert checked > 50


def _exact_rho50(D, s, T, seed, chunk=5000):
    # each trial succeeds on an interval of rho (intersection of half-lines); rho_50 from the exact curve
    g = _gen(seed)
    M = D.shape[1]
    gram = D.T @ D
    los, his = [], []
    for _ in range(T // chunk):
        sup = torch.rand(chunk, M, generator=g).argsort(dim=1)[:, :s]
        u = torch.rand(chunk, s, generator=g, dtype=DT)
        A = gram[sup].sum(dim=1)
        B = (gram[sup] * u[:, :, None]).sum(dim=1)
        mask = torch.zeros(chunk, M, dtype=torch.bool).scatter_(1, sup, True)
        a = torch.gather(A, 1, sup)[:, :, None] - A[:, None, :]
        b = torch.gather(B, 1, sup)[:, :, None] - B[:, None, :]
        valid = ~mask[:, None, :].expand_as(a)
        lo = torch.where(valid & (b > 0), -a / b, torch.full_like(a, -math.inf))
        los.append(torch.where(valid & (b == 0) & (a <= 0), torch.full_like(a, math.inf), lo).amax(dim=(1, 2)))
        his.append(torch.where(valid & (b < 0), a / (-b), torch.full_like(a, math.inf)).amin(dim=(1, 2)))
    lo, hi = torch.cat(los), torch.cat(his)

    def rate(r):
        return float(((r > lo) & (r < hi)).to(DT).mean())

    L, H = 0.0, 1.0
    while rate(H) > 0.5:
        L, H = H, 2 * H
    for _ in range(50):
        mid = (L + H) / 2
        L, H = (mid, H) if rate(mid) > 0.5 else (L, mid)
    return 1 + (L + H) / 2


def test_critical_contrast_matches_exact_interval_computation():
    D = sol.conv_dictionary(FILTERS_A, 64)
    ref = _exact_rho50(D, 4, 30000, 1)
    assert_close(ref, 4.04, rtol=0.03, name="reference value used in the notebook")
    for seed in (0, 1):
        assert_close(sol.critical_contrast(D, 4, _gen(seed)), ref, rtol=0.06, name="critical_contrast")


# ---------------------------------------------------------------- exercise 4
def test_layered_basis_pursuit_each_layer_is_a_lasso_solution():
    g = _gen(12)
    D1 = torch.randn(12, 20, generator=g, dtype=DT)
    D2 = torch.randn(20, 15, generator=g, dtype=DT)
    X = torch.randn(3, 12, generator=g, dtype=DT)
    out = sol.layered_basis_pursuit(X, [D1, D2], [0.2, 0.05], 4000)
    for b in range(3):
        assert_close(_objective(D1, X[b], 0.2, out[0][b]), _objective(D1, X[b], 0.2, _sk_lasso(D1, X[b], 0.2)),
                     rtol=1e-8, name="layer 1")
        assert_close(_objective(D2, out[0][b], 0.05, out[1][b]),
                     _objective(D2, out[0][b], 0.05, _sk_lasso(D2, out[0][b], 0.05)), rtol=1e-8, name="layer 2")


def test_res_csc_block_equals_nonnegative_ista_step_by_cvxpy():
    g = _gen(13)
    for M, lam in [(6, 0.2), (9, 0.0)]:
        D = torch.randn(M, M, generator=g, dtype=DT)
        W, b = sol.res_csc_block(D, lam)
        y = torch.rand(M, generator=g, dtype=DT)
        L = float(np.linalg.norm(D.numpy(), 2) ** 2)
        yy = y.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(0.5 * ((y - D @ yy) ** 2).sum(), yy)
        z = cp.Variable(M)
        cp.Problem(cp.Minimize(grad.numpy() @ (z - y.numpy()) + L / 2 * cp.sum_squares(z - y.numpy()) + lam * cp.sum(z)),
                   [z >= 0]).solve()
        assert_close(torch.relu(y + W @ y + b), z.value, atol=1e-6, name="residual block vs cvxpy prox step")


# ---------------------------------------------------------------- exercise 5
def test_csc_deconvolution_matches_dense_lasso_and_autograd_adjoint():
    g = _gen(14)
    f = torch.randn(2, 3, 3, generator=g, dtype=DT)
    x = torch.randn(6, 7, generator=g, dtype=DT)
    P = 2 * 8 * 9
    A = F.conv2d(torch.eye(P, dtype=DT).reshape(P, 2, 8, 9), f[None]).reshape(P, 42).T
    z = sol.csc_deconvolution(x, f, 0.1, 3000)
    ref = _sk_lasso(A, x.reshape(-1), 0.1)
    assert_close(_objective(A, x.reshape(-1), 0.1, z.reshape(-1)), _objective(A, x.reshape(-1), 0.1, ref), rtol=1e-8,
                 name="deconvolution objective")
    # the adjoint used inside (conv_transpose2d) is the autograd transpose of conv2d
    r = torch.randn(6, 7, generator=g, dtype=DT)
    zz = torch.zeros(2, 8, 9, dtype=DT, requires_grad=True)
    (adj,) = torch.autograd.grad((F.conv2d(zz[None], f[None])[0, 0] * r).sum(), zz)
    assert_close(F.conv_transpose2d(r[None, None], f[None])[0], adj, name="adjoint")


def _msd_module(c_in, c_out, dil):
    convs, ch = [], c_in
    for layer in dil:
        for s in layer:
            convs.append(torch.nn.Conv2d(ch, 1, 3, dilation=s, padding=s))
        ch += len(layer)
    return torch.nn.ModuleList(convs + [torch.nn.Conv2d(ch, c_out, 1)])


@pytest.mark.parametrize("depth,width,c_in,c_out", [(0, 1, 1, 1), (4, 2, 1, 2), (12, 3, 2, 4), (25, 1, 3, 1)])
def test_msd_param_count_equals_torch_nn(depth, width, c_in, c_out):
    dil = sol.msd_dilations(depth, width)
    assert [len(r) for r in dil] == [width] * depth
    flat = [s for r in dil for s in r]
    assert flat == [(k % 10) + 1 for k in range(depth * width)]
    mod = _msd_module(c_in, c_out, dil)
    assert sol.msd_param_count(depth, width, c_in, c_out) == sum(p.numel() for p in mod.parameters())


@pytest.mark.parametrize("depth,width", [(0, 1), (3, 1), (12, 1), (4, 3)])
def test_msd_receptive_field_by_autograd(depth, width):
    dil = sol.msd_dilations(depth, width)
    mod = _msd_module(1, 1, dil).to(DT)
    with torch.no_grad():
        for p in mod.parameters():
            p.uniform_(0.1, 1.0, generator=_gen(0))
    size = 131
    x = torch.ones(1, 1, size, size, dtype=DT, requires_grad=True)
    feats, k = x, 0
    for layer in dil:
        new = [torch.relu(mod[k + j](feats)) for j in range(len(layer))]
        k += len(layer)
        feats = torch.cat([feats] + new, dim=1)
    out = mod[-1](feats)
    (grad,) = torch.autograd.grad(out[0, 0, size // 2, size // 2], x)
    rows = torch.nonzero(grad[0, 0].abs().sum(dim=1) > 0)
    assert sol.msd_receptive_field(depth, width) == int(rows.max() - rows.min() + 1)
