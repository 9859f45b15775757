"""Unit tests of solutions.ps04_landscapes against independent oracles: Monte Carlo, torch.autograd /
torch.func, torch.optim.SGD, brute-force loops, scipy.integrate.quad, scipy.signal.dimpulse / lfilter,
cvxpy (nuclear-norm completion), sklearn LinearRegression and closed forms from the papers."""

import itertools
import math

import cvxpy as cp
import numpy as np
import pytest
import scipy.integrate
import scipy.signal
import torch
import torch.nn.functional as F
from sklearn.linear_model import LinearRegression

from coursekit.checks import assert_close, assert_true
from solutions import ps04_landscapes as sol

DT = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _unit_rows(n, d, seed):
    X = torch.randn(n, d, generator=_gen(seed), dtype=DT)
    return X / X.norm(dim=1, keepdim=True)


# ---------------------------------------------------------------- exercise 1
def test_h_infinity_matches_monte_carlo():
    X = _unit_rows(5, 3, 0)
    w = torch.randn(400_000, 3, generator=_gen(1), dtype=DT)
    S = (w @ X.T >= 0).to(DT)
    samples = (S[:, :, None] * S[:, None, :]) * (X @ X.T)
    se = samples.std(0) / math.sqrt(len(w))
    assert_close(sol.gram_h_infinity(X), samples.mean(0), name="H^inf vs MC", atol=float(5 * se.max()), rtol=0)


def test_h_infinity_rounding_and_degenerate_pairs():
    X = torch.randn(4, 3, generator=_gen(2), dtype=DT) * 1e3
    X = torch.cat([X, X[:1], -X[1:2]])
    X = X / X.norm(dim=1, keepdim=True)
    H = sol.gram_h_infinity(X)
    assert_true(bool(torch.isfinite(H).all()), "non-finite H^inf")
    assert_close(torch.diagonal(H), torch.full((6,), 0.5, dtype=DT), name="diagonal", atol=1e-7)
    assert_close(H[0, 4], 0.5, name="parallel pair", atol=1e-7)
    assert_close(H[1, 5], 0.0, name="opposite pair", atol=1e-7)


def test_gram_h_is_jacobian_gram_and_converges_to_h_infinity():
    X = _unit_rows(6, 4, 3)
    W = torch.randn(64, 4, generator=_gen(4), dtype=DT)
    a = torch.randint(0, 2, (64,), generator=_gen(5)).to(DT) * 2 - 1
    J = torch.func.jacrev(lambda V: torch.relu(X @ V.T) @ a / 8.0)(W).reshape(6, -1)
    assert_close(sol.gram_h(X, W), J @ J.T, name="H(W) vs J J^T")
    W = torch.randn(50_000, 4, generator=_gen(6), dtype=DT)
    assert_close(sol.gram_h(X, W), sol.gram_h_infinity(X), name="H(W), m = 5e4, vs H^inf", atol=1.5e-2, rtol=0)


def test_train_two_layer_matches_torch_optim_sgd():
    X = _unit_rows(8, 3, 7)
    y = torch.randn(8, generator=_gen(8), dtype=DT)
    W0 = torch.randn(30, 3, generator=_gen(9), dtype=DT)
    a = torch.randint(0, 2, (30,), generator=_gen(10)).to(DT) * 2 - 1
    W = W0.clone().requires_grad_(True)
    opt = torch.optim.SGD([W], lr=0.4)
    ref = []
    for k in range(6):
        opt.zero_grad()
        loss = 0.5 * ((torch.relu(X @ W.T) @ a / math.sqrt(30) - y) ** 2).sum()
        ref.append(loss.item())
        if k == 5:
            break
        loss.backward()
        opt.step()
    W0_copy = W0.clone()
    losses, Wf = sol.train_two_layer(X, y, W0, a, 0.4, 5)
    assert_close(losses, torch.tensor(ref, dtype=DT), name="losses vs torch.optim.SGD")
    assert_close(Wf, W.detach(), name="W vs torch.optim.SGD")
    assert_close(W0, W0_copy, name="W0 unchanged")


def test_train_two_layer_observed_rate_and_lambda_min():
    X = _unit_rows(10, 5, 0)
    y = torch.randn(10, generator=_gen(11), dtype=DT)
    lam0 = float(torch.linalg.eigvalsh(sol.gram_h_infinity(X))[0])
    W0 = torch.randn(4096, 5, generator=_gen(12), dtype=DT)
    a = torch.randint(0, 2, (4096,), generator=_gen(13)).to(DT) * 2 - 1
    losses, W = sol.train_two_layer(X, y, W0, a, 1.0, 150)
    bound = (1 - lam0 / 2) ** torch.arange(151, dtype=DT) * losses[0]
    assert_true(bool((losses <= bound * (1 + 1e-9)).all()), "rate bound violated")
    assert_true(float(torch.linalg.eigvalsh(sol.gram_h(X, W))[0]) >= lam0 / 2, "lambda_min(H(k)) < lambda_0 / 2")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_movement_exponent_near_minus_half(seed):
    X = _unit_rows(10, 5, 0)
    y = torch.randn(10, generator=_gen(11), dtype=DT)
    mov, p = sol.movement_vs_width(X, y, [128, 512, 2048, 8192], 1.0, 200, _gen(seed))
    assert_true(-0.7 < p < -0.3, f"exponent {p}")
    # the slope is the least-squares fit of the returned movements (numpy.polyfit as oracle)
    assert_close(p, np.polyfit(np.log([128, 512, 2048, 8192]), np.log(mov.numpy()), 1)[0], name="slope")


# ---------------------------------------------------------------- exercise 2
def _planted(d, seed):
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=_gen(seed), dtype=DT))
    A = Q.T.contiguous()
    return A, torch.einsum("ka,kb,kc,ke->abce", A, A, A, A)


def _sym(R):
    return sum(R.permute(*p) for p in itertools.permutations(range(4))) / 24


def test_tensor_objective_brute_force():
    R = _sym(torch.randn(3, 3, 3, 3, generator=_gen(20), dtype=DT)).numpy()
    U = torch.randn(4, 3, generator=_gen(21), dtype=DT)
    Un = U.numpy()
    ref = 0.0
    for i, j in itertools.permutations(range(4), 2):
        for idx in itertools.product(range(3), repeat=4):
            a, b, c, e = idx
            ref += R[idx] * Un[i, a] * Un[i, b] * Un[j, c] * Un[j, e]
    assert_close(sol.tensor_objective(torch.tensor(R), U), ref, name="objective")


def test_tensor_grad_matches_autograd():
    R = _sym(torch.randn(4, 4, 4, 4, generator=_gen(22), dtype=DT))
    U = torch.randn(3, 4, generator=_gen(23), dtype=DT, requires_grad=True)
    (g,) = torch.autograd.grad(sol.tensor_objective(R, U), U)
    assert_close(sol.tensor_objective_grad(R, U.detach()), g, name="grad")


def test_projected_noisy_gd_saddle_and_escape():
    A, T = _planted(4, 1)
    U0 = (A.sum(0) / 2).repeat(4, 1)
    U, vals = sol.projected_noisy_gd(T, U0, 0.1, 50, torch.zeros(50, 4, 4, dtype=DT))
    assert_close(U, U0, name="saddle", atol=1e-12)
    assert_close(vals, torch.full((51,), 3.0, dtype=DT), name="objective at saddle")
    noise = 0.1 * torch.randn(400, 4, 4, generator=_gen(24), dtype=DT)
    noise[200:] = 0
    U, vals = sol.projected_noisy_gd(T, U0, 0.1, 400, noise)
    C = (U @ A.T).abs()
    assert_close(C, (C > 0.5).to(DT), name="recovered components", atol=1e-8)
    assert_close((C > 0.5).sum(0).to(DT), torch.ones(4, dtype=DT), name="one row per component")


# ---------------------------------------------------------------- exercise 3
def _mc_instance(d, r, p, seed):
    g = _gen(seed)
    Z = torch.randn(d, r, generator=g, dtype=DT) / math.sqrt(r)
    up = torch.triu(torch.rand(d, d, generator=g) < p)
    mask = up | up.T
    M = Z @ Z.T
    return Z, M, mask, torch.where(mask, M, 100 * torch.randn(d, d, generator=g, dtype=DT))


def test_mc_objective_grad_matches_autograd():
    _, _, mask, M_obs = _mc_instance(10, 2, 0.6, 30)
    X = 1.5 * torch.randn(10, 2, generator=_gen(31), dtype=DT)
    V = X.clone().requires_grad_(True)
    R = torch.where(mask, V @ V.T - M_obs, torch.zeros((), dtype=DT))
    obj = 0.5 * (R**2).sum() + 0.7 * ((V.norm(dim=1) - 1.0).clamp(min=0) ** 4).sum()
    (g,) = torch.autograd.grad(obj, V)
    f, grad = sol.mc_objective_grad(X, mask, M_obs, 0.7, 1.0)
    assert_close(f, obj.detach(), name="f")
    assert_close(grad, g, name="grad")


def test_mc_gd_recovers_planted_from_20_starts_and_agrees_with_cvxpy():
    Z, M, mask, M_obs = _mc_instance(30, 2, 0.6, 38)
    alpha = 1.5 * float(Z.norm(dim=1).max())
    for s in range(20):
        X0 = torch.randn(30, 2, generator=_gen(100 + s), dtype=DT)
        X = sol.mc_gd(mask, M_obs, X0, 0.02, 300, 1.0, alpha)
        err = torch.linalg.norm(X @ X.T - M) / torch.linalg.norm(M)
        assert_true(float(err) < 1e-5, f"start {s}: relative error {float(err):.3g}")
    # convex oracle: minimum-trace PSD completion (Candes & Recht) on the same observations
    P = cp.Variable((30, 30), PSD=True)
    mk = mask.numpy()
    cons = [cp.multiply(mk.astype(float), P) == np.where(mk, M.numpy(), 0.0)]
    cp.Problem(cp.Minimize(cp.trace(P)), cons).solve(solver=cp.SCS, eps=1e-9, max_iters=200_000)
    Mc = torch.tensor(P.value)
    assert_true(float(torch.linalg.norm(Mc - M) / torch.linalg.norm(M)) < 1e-3, "cvxpy did not recover M")
    assert_close(X @ X.T, Mc, name="GD vs cvxpy completion", atol=1e-3 * float(M.abs().max()), rtol=0)


# ---------------------------------------------------------------- exercise 4
def _quad_coef(k):
    he = np.polynomial.hermite_e.HermiteE.basis(k)
    f = lambda z: z * he(z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    return scipy.integrate.quad(f, 0, 40, limit=200)[0] / math.sqrt(math.factorial(k))


def test_relu_hermite_matches_quadrature():
    for k in range(15):
        assert_close(sol.relu_hermite(k), _quad_coef(k), name=f"c_{k}", atol=1e-9)
    assert_close(sol.relu_hermite(2), 1 / math.sqrt(4 * math.pi), name="c_2")


def test_relu_kernel_is_half_arccos_kernel_and_hermite_series():
    rho = torch.linspace(-1, 1, 21, dtype=DT)
    theta = torch.arccos(rho)
    cho_saul_k1 = (torch.sin(theta) + (math.pi - theta) * torch.cos(theta)) / math.pi  # Cho & Saul (2009), n = 1
    assert_close(sol.relu_kernel(rho), cho_saul_k1 / 2, name="kappa vs k_1 / 2", atol=1e-12)
    c2 = torch.tensor([sol.relu_hermite(k) ** 2 for k in range(61)], dtype=DT)
    series = (c2 * rho[:, None] ** torch.arange(61, dtype=DT)).sum(1)
    assert_close(series, sol.relu_kernel(rho), name="Hermite series (61 terms)", atol=3e-4, rtol=0)
    c2 = c2[:21]
    series20 = (c2 * rho[:, None] ** torch.arange(21, dtype=DT)).sum(1)
    assert_close(series20, sol.relu_kernel(rho), name="Hermite series (21 terms)", atol=6e-4, rtol=0)


def test_population_loss_matches_monte_carlo():
    g = _gen(40)
    B = torch.randn(3, 4, generator=g, dtype=DT)
    B = B / B.norm(dim=1, keepdim=True)
    Bs = torch.randn(2, 4, generator=g, dtype=DT)
    Bs = Bs / Bs.norm(dim=1, keepdim=True)
    a, a_s = torch.randn(3, generator=g, dtype=DT), torch.randn(2, generator=g, dtype=DT)
    x = torch.randn(1_000_000, 4, generator=g, dtype=DT)
    e = (torch.relu(x @ B.T) @ a - torch.relu(x @ Bs.T) @ a_s) ** 2
    se = float(e.std() / math.sqrt(len(e)))
    assert_close(sol.population_loss(a, B, a_s, Bs), e.mean(), name="population loss", atol=5 * se, rtol=0)


# ---------------------------------------------------------------- exercise 5
def _ss(a, c, d):
    ell = len(a)
    A = np.zeros((ell, ell))
    A[:-1, 1:] = np.eye(ell - 1)
    A[-1] = -np.asarray(a)[::-1]
    B = np.zeros((ell, 1))
    B[-1] = 1
    return A, B, np.asarray(c)[None], np.array([[d]]), 1


def test_markov_parameters_match_dimpulse():
    a = torch.tensor(np.poly([0.5, -0.3, 0.2 + 0.3j, 0.2 - 0.3j]).real[1:], dtype=DT)
    c = torch.tensor([0.3, -1.0, 0.5, 2.0], dtype=DT)
    _, (h,) = scipy.signal.dimpulse(_ss(a.numpy(), c.numpy(), 0.4), n=25)
    assert_close(sol.markov_parameters(a, c, 0.4, 25), h[:, 0], name="Markov parameters")


def test_h2_distance_matches_markov_sum_and_simulation():
    a1, c1 = np.poly([0.9, -0.6, 0.3 + 0.4j, 0.3 - 0.4j]).real[1:], np.array([0.2, -0.1, 0.4, 1.0])
    a2, c2 = np.poly([0.5, -0.2, 0.1, 0.0])[1:], np.array([1.0, 0.0, -0.3, 0.5])
    _, (h1,) = scipy.signal.dimpulse(_ss(a1, c1, 0.1), n=1000)
    _, (h2,) = scipy.signal.dimpulse(_ss(a2, c2, -0.4), n=1000)
    val = sol.h2_distance_sq(*(torch.tensor(v, dtype=DT) for v in (a1, c1)), 0.1,
                             *(torch.tensor(v, dtype=DT) for v in (a2, c2)), -0.4)
    assert_close(val, float(((h1 - h2) ** 2).sum()), name="H2 vs Markov sum", rtol=1e-10)
    x = np.random.default_rng(0).standard_normal(400_000)

    def out(a, c, d):
        den = np.concatenate([[1.0], a])
        return scipy.signal.lfilter(d * den + np.concatenate([[0.0], c[::-1]]), den, x)

    err = (out(a1, c1, 0.1) - out(a2, c2, -0.4))[1000:] ** 2
    assert_close(val, err.mean(), name="H2 vs simulated output error", rtol=0.03)


def test_fit_lds_gd_recovers_system():
    a, c = torch.tensor([-0.5, 0.06, 0.02], dtype=DT), torch.tensor([1.0, -0.5, 0.3], dtype=DT)
    ah, ch, dh, risks = sol.fit_lds_gd(a, c, 0.7, 0.2, 100)
    _, (h,) = scipy.signal.dimpulse(_ss(a.numpy(), c.numpy(), 0.7), n=400)
    assert_close(risks[0], float((h**2).sum()), name="risk at 0", rtol=1e-10)
    assert_true(float(risks[-1]) < 1e-12, "risk not small")
    assert_close(torch.cat([ah, ch, dh.reshape(1)]), torch.cat([a, c, torch.tensor([0.7], dtype=DT)]),
                 name="parameters", atol=1e-6)


# ---------------------------------------------------------------- exercise 6
def test_leaky_net_matches_functional():
    g = _gen(60)
    W, b, v = torch.randn(5, 3, generator=g, dtype=DT), torch.randn(5, generator=g, dtype=DT), \
        torch.randn(5, generator=g, dtype=DT)
    X = torch.randn(20, 3, generator=g, dtype=DT)
    c = torch.tensor(-0.2, dtype=DT)
    assert_close(sol.leaky_net(W, b, v, c, X, 0.2), F.leaky_relu(X @ W.T + b, 0.2) @ v + c, name="leaky net")


@pytest.mark.parametrize("h,slope", [(1, 0.0), (4, 0.1), (7, 0.5)])
def test_spurious_minimum_properties(h, slope):
    g = _gen(61)
    X = torch.randn(30, 2, generator=g, dtype=DT) * 3
    y = X[:, 0] ** 2 - X[:, 1]
    W, b, v, c = sol.spurious_minimum(X, y, h, slope)
    assert_true(bool((X @ W.T + b > 0).all()), "inactive unit")
    lr = LinearRegression().fit(X.numpy(), y.numpy())
    out = sol.leaky_net(W, b, v, c, X, slope)
    assert_close(out, lr.predict(X.numpy()), name="network = least-squares affine fit", atol=1e-9)
    P = [t.clone().requires_grad_(True) for t in (W, b, v, c)]
    loss = ((sol.leaky_net(*P, X, slope) - y) ** 2).sum()
    for gr in torch.autograd.grad(loss, P):
        assert_close(gr, torch.zeros_like(gr), name="gradient", atol=1e-8)
    L0 = loss.item()
    for _ in range(100):
        Q = [t + 1e-3 * torch.randn(t.shape, generator=g, dtype=DT) for t in (W, b, v, c)]
        assert_true(((sol.leaky_net(*Q, X, slope) - y) ** 2).sum().item() >= L0 - 1e-9, "perturbation lowers loss")
