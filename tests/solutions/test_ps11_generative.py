"""Unit tests of solutions.ps11_generative against independent oracles: torch.distributions, Monte Carlo,
torch.autograd, scikit-learn's probabilistic PCA, scipy (jensenshannon, wasserstein_distance, quadrature,
spearmanr), POT's exact transport solver, cvxpy, brute-force enumeration."""

import math

import cvxpy as cp
import numpy as np
import ot
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.stats import norm, spearmanr, wasserstein_distance
from sklearn.decomposition import PCA
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from coursekit.checks import assert_close, assert_true
from solutions import ps11_generative as sol

DT = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- exercise 1
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_kl_matches_torch_distributions(dtype):
    g = _gen(0)
    mu = 2 * torch.randn(6, 4, generator=g, dtype=DT)
    logvar = torch.empty(6, 4, dtype=DT).uniform_(-15, 6, generator=g)
    ref = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(1)
    got = sol.gaussian_kl(mu.to(dtype), logvar.to(dtype))
    assert_true(got.dtype == dtype, "dtype changed")
    assert_close(got, ref.to(dtype), name="gaussian_kl")


def _mc_elbo(X, W, b, log_sigma2, V, logvar, S, g):
    mu = (X - b) @ V.T
    std = torch.exp(0.5 * logvar)
    z = mu + std * torch.randn(S, *mu.shape, generator=g, dtype=DT)
    terms = (Normal(z @ W.T + b, torch.exp(0.5 * log_sigma2)).log_prob(X).sum(-1)
             + Normal(0.0, 1.0).log_prob(z).sum(-1) - Normal(mu, std).log_prob(z).sum(-1))
    return terms.mean(0), terms.std(0) / math.sqrt(S)


def test_linear_vae_elbo_matches_monte_carlo():
    g = _gen(1)
    X = torch.randn(5, 4, generator=g, dtype=DT)
    W, b = torch.randn(4, 3, generator=g, dtype=DT), torch.randn(4, generator=g, dtype=DT)
    V = 0.4 * torch.randn(3, 4, generator=g, dtype=DT)
    ls, lv = torch.tensor(0.4, dtype=DT), torch.tensor([-1.0, 0.2, 0.5], dtype=DT)
    est, se = _mc_elbo(X, W, b, ls, V, lv, 400_000, g)
    assert_close(sol.linear_vae_elbo(X, W, b, ls, V, lv), est, name="ELBO vs MC", rtol=0, atol=float(5 * se.max()))


def test_linear_vae_elbo_is_tight_at_the_exact_posterior_and_a_bound_elsewhere():
    g = _gen(2)
    Q, _ = torch.linalg.qr(torch.randn(5, 3, generator=g, dtype=DT))
    W = Q * torch.tensor([3.0, 1.0, 0.4], dtype=DT)
    b, s2 = torch.randn(5, generator=g, dtype=DT), 0.5
    Minv = torch.linalg.inv(W.T @ W + s2 * torch.eye(3, dtype=DT))
    X = 2 * torch.randn(7, 5, generator=g, dtype=DT)
    logp = MultivariateNormal(b, W @ W.T + s2 * torch.eye(5, dtype=DT)).log_prob(X)
    ls = torch.tensor(math.log(s2), dtype=DT)
    exact = sol.linear_vae_elbo(X, W, b, ls, Minv @ W.T, torch.log(s2 * torch.diagonal(Minv)))
    assert_close(exact, logp, name="tight ELBO")
    other = sol.linear_vae_elbo(X, W, b, ls, 0.5 * Minv @ W.T, torch.zeros(3, dtype=DT))
    assert_true(bool((other < logp).all()), "ELBO must be below log p(x) for a wrong encoder")


def test_linear_vae_elbo_gradient_matches_reparameterisation_gradient():
    g = _gen(3)
    X = torch.randn(3, 3, generator=g, dtype=DT)
    W, b = torch.randn(3, 2, generator=g, dtype=DT), torch.randn(3, generator=g, dtype=DT)
    V = 0.5 * torch.randn(2, 3, generator=g, dtype=DT)
    ls, lv = torch.tensor(0.2, dtype=DT), torch.tensor([-0.7, 0.4], dtype=DT)
    Wg, lg = W.clone().requires_grad_(True), lv.clone().requires_grad_(True)
    analytic = torch.autograd.grad(sol.linear_vae_elbo(X, Wg, b, ls, V, lg).sum(), (Wg, lg))
    grads = []
    for _ in range(10):
        Wg, lg = W.clone().requires_grad_(True), lv.clone().requires_grad_(True)
        mu, std = (X - b) @ V.T, torch.exp(0.5 * lg)
        z = mu + std * torch.randn(20_000, 3, 2, generator=g, dtype=DT)
        obj = (Normal(z @ Wg.T + b, math.exp(0.1)).log_prob(X).sum(-1) + Normal(0.0, 1.0).log_prob(z).sum(-1)
               - Normal(mu, std).log_prob(z).sum(-1)).mean(0).sum()
        grads.append(torch.cat([t.reshape(-1) for t in torch.autograd.grad(obj, (Wg, lg))]))
    grads = torch.stack(grads)
    assert_close(torch.cat([t.reshape(-1) for t in analytic]), grads.mean(0), name="grad",
                 rtol=0, atol=float(5 * grads.std(0).max() / math.sqrt(10) + 1e-6))


@pytest.mark.parametrize("seed,N,d,k", [(4, 300, 4, 2), (5, 200, 3, 1), (6, 400, 6, 3)])
def test_fit_linear_vae_reaches_the_ppca_likelihood(seed, N, d, k):
    g = _gen(seed)
    A = torch.randn(d, k, generator=g, dtype=DT) * torch.linspace(3, 1, k, dtype=DT)
    X = torch.randn(N, k, generator=g, dtype=DT) @ A.T + 0.5 * torch.randn(N, d, generator=g, dtype=DT) + 1.0
    params = sol.fit_linear_vae(X, k, _gen(0))
    elbo = float(sol.linear_vae_elbo(X, *params).mean())
    ppca = PCA(k).fit(X.numpy()).score(X.numpy())
    assert_true(ppca - 0.01 < elbo < ppca + 1e-3, f"ELBO {elbo} vs pPCA {ppca}")


# ---------------------------------------------------------------- exercise 2
def test_optimal_discriminator_is_the_pointwise_maximiser():
    g = _gen(10)
    p, q = torch.rand(7, generator=g, dtype=DT), torch.rand(7, generator=g, dtype=DT)
    grid = torch.linspace(1e-5, 1 - 1e-5, 99_999, dtype=DT)
    best = grid[(p[:, None] * torch.log(grid) + q[:, None] * torch.log1p(-grid)).argmax(1)]
    assert_close(sol.optimal_discriminator(p, q), best, name="D*", rtol=0, atol=2e-5)


@pytest.mark.parametrize("seed", [11, 12])
def test_gan_value_at_optimum_is_jsd(seed):
    g = _gen(seed)
    p, q = torch.rand(9, generator=g, dtype=DT), torch.rand(9, generator=g, dtype=DT)
    p[0] = 0.0
    q[1] = 0.0
    p, q = p / p.sum(), q / q.sum()
    v = sol.gan_value(sol.optimal_discriminator(p, q), p, q)
    assert_close(v, -math.log(4) + 2 * jensenshannon(p.numpy(), q.numpy()) ** 2, name="V(D*)")


def test_gan_value_disjoint_supports_is_zero():
    p, q = torch.tensor([0.3, 0.7, 0.0], dtype=DT), torch.tensor([0.0, 0.0, 1.0], dtype=DT)
    assert_close(sol.gan_value(sol.optimal_discriminator(p, q), p, q), 0.0, name="V(D*) disjoint", atol=1e-15)


def test_trained_discriminator_approaches_optimum():
    g = _gen(13)
    n = 1000
    comp = torch.rand(n, generator=g) < 0.5
    xr = torch.where(comp, -2 + 0.5 * torch.randn(n, generator=g, dtype=DT), 1 + 0.7 * torch.randn(n, generator=g, dtype=DT))
    xf = 1.5 * torch.randn(n, generator=g, dtype=DT)
    D = sol.train_discriminator(xr, xf, _gen(0))
    grid = np.linspace(-4, 4, 401)
    p = 0.5 * norm.pdf(grid, -2, 0.5) + 0.5 * norm.pdf(grid, 1, 0.7)
    q = norm.pdf(grid, 0, 1.5)
    err = np.abs(D(torch.tensor(grid)).numpy() - p / (p + q))[(p + q) > 0.05].mean()
    assert_true(err < 0.05, f"mean |D - D*| = {err}")


# ---------------------------------------------------------------- exercise 3
@pytest.mark.parametrize("theta", [0.0, 0.3, -2.0])
def test_parallel_lines_against_samples(theta):
    n = 200
    z = np.random.default_rng(0).random(n)
    P0, Pt = np.stack([np.zeros(n), z], 1), np.stack([np.full(n, theta), z], 1)
    w1 = ot.emd2(np.full(n, 1 / n), np.full(n, 1 / n), ot.dist(P0, Pt, metric="euclidean"))
    # smooth both lines by a narrow Gaussian in x_1 and integrate JS, TV, KL numerically on a fine grid
    s = 0.01
    xs = np.linspace(-3, 3, 60001)
    f0, ft = norm.pdf(xs, 0, s), norm.pdf(xs, theta, s)
    dx = xs[1] - xs[0]
    m = (f0 + ft) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        js = 0.5 * np.nansum(f0 * np.log(f0 / m)) * dx + 0.5 * np.nansum(ft * np.log(ft / m)) * dx
    tv = 0.5 * np.abs(f0 - ft).sum() * dx
    out = sol.parallel_lines_divergences(theta).numpy()
    assert_close(out[0], w1, name="W1", rtol=1e-6, atol=1e-9)
    assert_close(out[1], js, name="JS", rtol=0, atol=1e-6)
    assert_close(out[3], tv, name="TV", rtol=0, atol=1e-6)
    assert_true(out[2] == (math.inf if theta != 0 else 0.0), f"KL {out[2]}")


@pytest.mark.parametrize("a,c,theta", [(2.0, 0.5, 1.0), (-5.0, 2.0, 0.7), (3.0, -1.0, -2.0)])
def test_vanishing_gradient_against_autograd(a, c, theta):
    th = torch.tensor(theta, dtype=DT, requires_grad=True)
    (gref,) = torch.autograd.grad(torch.log1p(-torch.sigmoid(a * th + c)), th)
    grad, eps = sol.vanishing_gradient(a, c, theta)
    assert_close(grad, gref, name="grad")
    # eps by brute force: |D - D*| and |dD/dx_1| on both lines (D does not depend on x_2)
    x = torch.tensor([0.0, theta], dtype=DT, requires_grad=True)
    D = torch.sigmoid(a * x + c)
    (dD,) = torch.autograd.grad(D.sum(), x)
    D = D.detach()
    ref = max(float(1 - D[0]), float(D[1])) + float(dD.abs().max())
    assert_close(eps, ref, name="eps")
    if eps < 1:
        assert_true(abs(float(grad)) < float(eps) / (1 - float(eps)), "Theorem 2.4 bound")


# ---------------------------------------------------------------- exercise 4
@pytest.mark.parametrize("seed,n,m,d", [(20, 5, 4, 2), (21, 9, 7, 3), (22, 6, 6, 1)])
def test_w1_dual_lp_matches_emd_and_certificate(seed, n, m, d):
    g = _gen(seed)
    x, y = torch.randn(n, d, generator=g, dtype=DT), torch.randn(m, d, generator=g, dtype=DT) + 0.7
    a, b = torch.rand(n, generator=g, dtype=DT) + 0.1, torch.rand(m, generator=g, dtype=DT) + 0.1
    a, b = a / a.sum(), b / b.sum()
    value, fx, fy = sol.w1_dual_lp(x, a, y, b)
    ref = ot.emd2(a.numpy(), b.numpy(), ot.dist(x.numpy(), y.numpy(), metric="euclidean"))
    assert_close(value, ref, name="W1", rtol=1e-7, atol=1e-9)
    if d == 1:
        assert_close(value, wasserstein_distance(x[:, 0].numpy(), y[:, 0].numpy(), a.numpy(), b.numpy()), name="W1 1-D")
    F = torch.cat([fx, fy])
    Z = torch.cat([x, y])
    assert_true(float((F[:, None] - F[None, :] - torch.cdist(Z, Z)).max()) <= 1e-8, "Lipschitz")
    assert_close(a @ fx - b @ fy, value, name="certificate")


def test_w1_dual_lp_matches_cvxpy_dual():
    g = _gen(23)
    x, y = torch.randn(6, 2, generator=g, dtype=DT), torch.randn(5, 2, generator=g, dtype=DT)
    a, b = torch.full((6,), 1 / 6, dtype=DT), torch.full((5,), 1 / 5, dtype=DT)
    Z = torch.cat([x, y]).numpy()
    Dm = np.sqrt(((Z[:, None] - Z[None]) ** 2).sum(-1))
    f = cp.Variable(11)
    cons = [f[i] - f[j] <= Dm[i, j] for i in range(11) for j in range(11) if i != j]
    prob = cp.Problem(cp.Maximize(a.numpy() @ f[:6] - b.numpy() @ f[6:]), cons)
    prob.solve()
    assert_close(sol.w1_dual_lp(x, a, y, b)[0], prob.value, name="W1 vs cvxpy", rtol=1e-6, atol=1e-8)


def test_clipped_critic_rank_correlates_with_w1():
    g = _gen(24)
    x0 = torch.randn(300, generator=g, dtype=DT)
    thetas = [0.25, 0.5, 1.0, 2.0, 4.0]
    fakes = [torch.randn(300, generator=g, dtype=DT) + t for t in thetas]
    est = [sol.clipped_critic_w1(x0, xf, 0.1, 60, 0.01, _gen(0)) for xf in fakes]
    assert_true(spearmanr(est, thetas)[0] > 0.999 and min(est) > 0, f"{est}")
    # every weight in [-c, c]: the critic is K-Lipschitz with K <= ||W3|| ||W2|| ||W1|| <= (4c)(16c)(4c) = 256 c^3,
    # so its value is at most K times the empirical W1 (Kantorovich-Rubinstein)
    for e, xf in zip(est, fakes):
        assert_true(e <= 256 * 0.1**3 * wasserstein_distance(x0.numpy(), xf.numpy()) + 1e-12, "estimate above K W1")


# ---------------------------------------------------------------- exercise 5
def _mmd_loops(x, y, scales):
    k = lambda u, v: sum(C / (C + float(((u - v) ** 2).sum())) for C in scales)  # noqa: E731
    n, m = len(x), len(y)
    return (sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
            + sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
            - 2 * sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m))


def test_mmd_imq_matches_loops_and_is_unbiased():
    g = _gen(30)
    x, y = torch.randn(6, 3, generator=g, dtype=DT), torch.randn(8, 3, generator=g, dtype=DT)
    assert_close(sol.mmd_imq(x, y, [0.5, 2.0]), _mmd_loops(x, y, [0.5, 2.0]), name="mmd_imq")
    vals = torch.stack([sol.mmd_imq(torch.randn(5, 2, generator=g, dtype=DT), torch.randn(7, 2, generator=g, dtype=DT),
                                    [1.0]) for _ in range(2000)])
    assert_true(abs(float(vals.mean())) < 4 * float(vals.std()) / math.sqrt(2000), "unbiased under the null")


@pytest.mark.parametrize("d,v1,v2,bw", [(1, 1.0, 0.5, 1.0), (3, 0.5, 1.5, 2.0)])
def test_mmd2_rbf_gaussians_vs_large_sample_u_statistic(d, v1, v2, bw):
    g = _gen(31)
    mu1, mu2 = torch.randn(d, generator=g, dtype=DT), torch.randn(d, generator=g, dtype=DT)
    n, reps = 1000, 20
    vals = []
    for _ in range(reps):
        x = mu1 + math.sqrt(v1) * torch.randn(n, d, generator=g, dtype=DT)
        y = mu2 + math.sqrt(v2) * torch.randn(n, d, generator=g, dtype=DT)
        K = lambda u, v: torch.exp(-torch.cdist(u, v) ** 2 / (2 * bw**2))  # noqa: E731
        off = 1 - torch.eye(n, dtype=DT)
        vals.append(float((K(x, x) * off).sum() / (n * (n - 1)) + (K(y, y) * off).sum() / (n * (n - 1)) - 2 * K(x, y).mean()))
    vals = np.array(vals)
    se = vals.std(ddof=1) / math.sqrt(reps)
    assert_close(sol.mmd2_rbf_gaussians(mu1, v1, mu2, v2, bw), vals.mean(), name="MMD^2", rtol=0, atol=5 * se)


def test_mmd_std_exponents_in_range():
    a0, a1 = sol.mmd_std_exponents(1.0, [1.0, 4.0], _gen(32))
    assert_true(-1.15 < a0 < -0.85 and -0.65 < a1 < -0.45, f"{a0}, {a1}")


# ---------------------------------------------------------------- exercise 6
def test_sdot_energy_grad_against_autograd():
    g = _gen(40)
    Y, x = torch.randn(5, 2, generator=g, dtype=DT), 2 * torch.rand(300, 2, generator=g, dtype=DT) - 1
    nu = torch.rand(5, generator=g, dtype=DT) + 0.1
    nu = nu / nu.sum()
    h = torch.randn(5, generator=g, dtype=DT, requires_grad=True)
    E_ref = (x @ Y.T + h).max(1).values.mean() - nu @ h
    E, grad = sol.sdot_energy_grad(h.detach(), Y, x, nu)
    assert_close(E, E_ref.detach(), name="E")
    assert_close(grad, torch.autograd.grad(E_ref, h)[0], name="grad E")


def test_solve_sdot_masses_and_agreement_with_emd():
    g = _gen(41)
    Y = torch.randn(7, 2, generator=g, dtype=DT)
    nu = torch.rand(7, generator=g, dtype=DT) + 0.2
    nu = nu / nu.sum()
    h = sol.solve_sdot(Y, nu, 2000, 300, 0.1, _gen(0))
    xe = 2 * torch.rand(200_000, 2, generator=g, dtype=DT) - 1
    w = torch.bincount((xe @ Y.T + h).argmax(1), minlength=7).to(DT) / 200_000
    assert_close(w, nu, name="cell masses", rtol=0, atol=0.01)
    xs = 2 * torch.rand(2000, 2, generator=g, dtype=DT) - 1
    plan = ot.emd(np.full(2000, 1 / 2000), nu.numpy(), ot.dist(xs.numpy(), Y.numpy()))
    agree = plan[np.arange(2000), (xs @ Y.T + h).argmax(1).numpy()].sum()
    assert_true(agree > 0.93, f"agreement {agree}")
