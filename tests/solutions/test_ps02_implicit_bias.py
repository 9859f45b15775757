"""Unit tests of solutions.ps02_implicit_bias against independent oracles.

Oracles: torch.autograd / torch.optim.SGD (gradient steps), scipy.optimize.nnls (KKT certificate of the
SVM), cvxpy (min-trace PSD sensing, min relative entropy interpolant, polynomial-loss limit direction),
numpy.linalg.pinv (min-l2 interpolant), scipy.stats.entropy (effective rank), finite differences of
singular values in torch (end-to-end dynamics).
"""

import cvxpy as cp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import nnls
from scipy.stats import entropy

from coursekit.checks import assert_close
from solutions import ps02_implicit_bias as sol


def separable_data(seed, n=12):
    """2-D data whose max-margin separator through the origin is exactly w_star = (1, 0.5)."""
    rng = np.random.default_rng(seed)
    w_star = np.array([1.0, 0.5])
    perp = np.array([-w_star[1], w_star[0]]) / np.linalg.norm(w_star)
    base = w_star / (w_star @ w_star)
    z = [base + 0.8 * perp, base - 0.5 * perp]  # support vectors, w_star in their cone
    while len(z) < n:
        p = rng.normal(size=2) * 2
        if p @ w_star >= 2:
            z.append(p)
    Z = np.array(z)
    y = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    return y[:, None] * Z, y, w_star


def torch_gd(loss_fn, w0, lr, steps):
    w = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([w], lr=lr)
    out = [w.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(w).backward()
        opt.step()
        out.append(w.detach().clone())
    return torch.stack(out).numpy()


def test_gd_logistic_matches_torch_sgd():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(9, 3))
    y = np.where(rng.random(9) < 0.5, 1.0, -1.0)
    Xt, yt = torch.tensor(X), torch.tensor((y + 1) / 2)
    ref = torch_gd(lambda w: F.binary_cross_entropy_with_logits(Xt @ w, yt), np.zeros(3), 0.7, 40)
    assert_close(sol.gd_logistic(X, y, 0.7, 40), ref, name="trajectory")


def test_gd_logistic_direction_tends_to_max_margin():
    X, y, w_star = separable_data(1)
    traj = sol.gd_logistic(X, y, 1.0, 20000)
    w = traj[-1]
    cos = w @ w_star / np.linalg.norm(w) / np.linalg.norm(w_star)
    assert np.arccos(min(cos, 1.0)) < 0.06, "direction not close to the max-margin one"
    # ||w(t)|| / log t -> ||w_hat|| (Soudry et al. Thm 3)
    assert_close(np.linalg.norm(w) / np.log(20000), np.linalg.norm(w_star), rtol=0.25, name="norm/log t")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_max_margin_kkt_certificate(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(15, 4))
    y = np.sign(X @ rng.normal(size=4))
    w = sol.max_margin_direction(X, y)
    margins = y * (X @ w)
    assert margins.min() > 1 - 1e-6, "infeasible"
    active = margins < 1 + 1e-4
    Z = (y[:, None] * X)[active]
    alpha, _ = nnls(Z.T, w)  # w = sum_i alpha_i y_i x_i with alpha >= 0 on the active set
    assert_close(Z.T @ alpha, w, rtol=1e-4, atol=1e-6, name="stationarity")


def test_max_margin_known_solution():
    X, y, w_star = separable_data(3)
    assert_close(sol.max_margin_direction(X, y), w_star, rtol=1e-5, atol=1e-6, name="w_hat")


@pytest.mark.parametrize("loss", ["logistic", "poly"])
def test_weighted_gd_matches_torch_sgd(loss):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(10, 3))
    y = np.where(rng.random(10) < 0.5, 1.0, -1.0)
    c = rng.uniform(0.5, 5.0, size=10)
    Zt, ct = torch.tensor(y[:, None] * X), torch.tensor(c)

    def loss_fn(w):
        u = Zt @ w
        ell = F.softplus(-u) if loss == "logistic" else torch.exp(-2.0 * torch.asinh(u))
        return (ct * ell).mean()

    ref = torch_gd(loss_fn, np.zeros(3), 0.3, 30)
    assert_close(sol.weighted_gd(X, y, c, loss, 0.3, 30, alpha=2.0), ref, name="trajectory")


def test_weighted_gd_limits():
    X, y, w_star = separable_data(0)
    c = np.where(y > 0, 10.0, 1.0)
    Z = y[:, None] * X

    def angle(a, b):
        return np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))

    lg = sol.weighted_gd(X, y, c, "logistic", 1.0, 20000)
    assert angle(lg[-1], w_star) < 0.5 * angle(lg[1000], w_star), "logistic: weights' effect should vanish"
    # poly tail: the limit direction minimises sum_i c_i (z_i . v)^-alpha over the unit ball (cvxpy)
    v = cp.Variable(2)
    cp.Problem(cp.Minimize(c @ cp.power(Z @ v, -1.0)), [cp.norm(v) <= 1]).solve()
    pw = sol.weighted_gd(X, y, c, "poly", 1.0, 10000)
    assert angle(pw[-1], v.value) < 0.02, "poly: not the weighted limit direction"
    assert angle(v.value, w_star) > 0.1


def test_factorized_sensing_matches_autograd():
    rng = np.random.default_rng(5)
    M, n = 4, 5
    A = rng.normal(size=(M, n, n))
    A = (A + A.transpose(0, 2, 1)) / 2
    y = rng.normal(size=M)
    At, yt = torch.tensor(A), torch.tensor(y)
    U = torch.tensor(0.7 * np.eye(n), requires_grad=True)
    opt = torch.optim.SGD([U], lr=0.05)
    for _ in range(25):
        opt.zero_grad()
        (0.5 * ((torch.einsum("mij,ij->m", At, U @ U.T) - yt) ** 2).mean()).backward()
        opt.step()
    ref = (U @ U.T).detach().numpy()
    assert_close(sol.gd_factorized_sensing(A, y, 0.7, 0.05, 25), ref, name="X")


def test_factorized_sensing_small_init_gives_min_trace():
    rng = np.random.default_rng(0)
    n, M = 5, 3
    V, _ = np.linalg.qr(rng.normal(size=(n, n)))
    A = np.einsum("ik,mk,jk->mij", V, rng.normal(size=(M, n)), V)  # commuting measurements
    s = rng.uniform(0.2, 1.0, size=n)
    s[-1] = 0
    y = np.einsum("mij,ij->m", A, V @ np.diag(s) @ V.T)
    Xv = cp.Variable((n, n), PSD=True)
    cp.Problem(cp.Minimize(cp.trace(Xv)), [cp.sum(cp.multiply(A[m], Xv)) == y[m] for m in range(M)]).solve()
    Xg = sol.gd_factorized_sensing(A, y, 1e-6, 0.05, 6000)
    assert np.linalg.norm(Xg - Xv.value) < 0.02 * np.linalg.norm(Xv.value), "not the min-trace solution"
    big = sol.gd_factorized_sensing(A, y, 1.0, 0.05, 3000)
    assert np.linalg.norm(big - Xv.value) > 0.3 * np.linalg.norm(Xv.value), "large init should not be min-trace"


@pytest.mark.parametrize("potential", ["euclidean", "entropy"])
def test_mirror_descent_one_step(potential):
    rng = np.random.default_rng(6)
    X = rng.normal(size=(4, 7))
    y = rng.normal(size=4)
    w0 = rng.uniform(0.5, 2.0, size=7)
    w = torch.tensor(w0, requires_grad=True)
    (0.5 * ((torch.tensor(X) @ w - torch.tensor(y)) ** 2).mean()).backward()
    g = w.grad.numpy()
    ref = w0 - 0.3 * g if potential == "euclidean" else np.exp(np.log(w0) - 0.3 * g)
    assert_close(sol.mirror_descent(X, y, w0, potential, 0.3, 1), ref, name="w(1)")


def test_mirror_descent_limits():
    rng = np.random.default_rng(0)
    N, D = 5, 12
    X = rng.normal(size=(N, D))
    y = X @ rng.uniform(0.2, 1.5, size=D)
    w0 = rng.uniform(0.5, 1.5, size=D)
    gd = sol.mirror_descent(X, y, w0, "euclidean", 0.1, 3000)
    assert_close(gd, w0 + np.linalg.pinv(X) @ (y - X @ w0), rtol=1e-6, atol=1e-8, name="GD limit")
    v = cp.Variable(D)
    cp.Problem(cp.Minimize(cp.sum(cp.rel_entr(v, w0) - v)), [X @ v == y]).solve()
    eg = sol.mirror_descent(X, y, w0, "entropy", 0.1, 3000)
    assert_close(eg, v.value, rtol=1e-3, atol=1e-3, name="EG limit")


def test_effective_rank():
    assert_close(sol.effective_rank(np.array([2.0, 2.0, 2.0, 0.0])), 3.0, name="uniform")
    s = np.random.default_rng(0).uniform(0, 1, size=9)
    assert_close(sol.effective_rank(s), np.exp(entropy(s)), name="erank")


@pytest.mark.parametrize("depth", [1, 3])
def test_deep_mf_matches_autograd(depth):
    rng = np.random.default_rng(7)
    n = 6
    mask = (rng.random((n, n)) < 0.5).astype(float)
    obs = mask * rng.normal(size=(n, n))
    Ws = [torch.tensor(0.5 * np.eye(n), requires_grad=True) for _ in range(depth)]
    opt = torch.optim.SGD(Ws, lr=0.1)
    m, o = torch.tensor(mask), torch.tensor(obs)
    svals = []
    for t in range(21):
        P = torch.linalg.multi_dot(Ws[::-1]) if depth > 1 else Ws[0]
        svals.append(torch.linalg.svdvals(P.detach()))
        if t == 20:
            break
        opt.zero_grad()
        (0.5 * (m * (P - o) ** 2).sum()).backward()
        opt.step()
    W, sv = sol.deep_mf(mask, obs, depth, 0.5, 0.1, 20)
    assert_close(W, P.detach().numpy(), name="W")
    assert_close(sv, torch.stack(svals).numpy(), name="svals")


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_singular_value_rate_finite_differences(depth):
    rng = np.random.default_rng(depth)
    n = 5
    U, _ = np.linalg.qr(rng.normal(size=(n, n)))
    V, _ = np.linalg.qr(rng.normal(size=(n, n)))
    s = np.array([3.0, 2.0, 1.2, 0.7, 0.3])
    W = U @ np.diag(s) @ V.T
    G = rng.normal(size=(n, n))
    # balanced factors of W: W_1 = Q_1 S V^T, W_j = Q_j S Q_{j-1}^T, W_N = U S Q_{N-1}^T, S = diag(s^(1/N))
    Qs = [V] + [np.linalg.qr(rng.normal(size=(n, n)))[0] for _ in range(depth - 1)] + [U]
    S = np.diag(s ** (1.0 / depth))
    Ws = [torch.tensor(Qs[j + 1] @ S @ Qs[j].T, requires_grad=True) for j in range(depth)]
    P = torch.linalg.multi_dot(Ws[::-1]) if depth > 1 else Ws[0]
    assert np.allclose(P.detach().numpy(), W)
    (torch.tensor(G) * P).sum().backward()  # loss <G, W>, gradient G
    eta = 1e-6
    with torch.no_grad():
        P2 = torch.linalg.multi_dot([w - eta * w.grad for w in Ws][::-1]) if depth > 1 else Ws[0] - eta * Ws[0].grad
    fd = (torch.linalg.svdvals(P2).numpy() - s) / eta
    assert_close(sol.singular_value_rate(W, G, depth), fd, rtol=1e-4, atol=1e-4, name="d sigma / dt")
