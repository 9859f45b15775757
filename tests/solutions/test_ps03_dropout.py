"""Unit tests of solutions.ps03_dropout against independent oracles:
torch.nn.functional.dropout (same RNG), torch.autograd, torch.optim.SGD / Adam, exhaustive enumeration
of masks, Monte Carlo in numpy, closed-form moment generating functions, scipy.stats.gmean,
sklearn Ridge / LinearRegression / LogisticRegression (dropout training on stacked noised copies),
cvxpy, numpy's nuclear norm, and gradient descent by torch.optim.SGD on the mask-averaged loss
(enumerated masks, no closed form) for the regularizer-only training of exercise 7."""

import itertools

import cvxpy as cp
import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F
from sklearn.linear_model import LinearRegression, Ridge

from coursekit.checks import assert_close, assert_true
from solutions import ps03_dropout as sol

DT = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _masks(n):
    return np.array(list(itertools.product([0, 1], repeat=n)), dtype=float)


# ---------------------------------------------------------------- exercise 1
@pytest.mark.parametrize("p", [0.3, 0.5, 0.8])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dropout_forward_matches_torch_dropout(p, dtype):
    x = torch.rand(5, 7, generator=_gen(0), dtype=dtype) + 0.5  # no zeros: mask = out != 0
    torch.manual_seed(3)
    out = F.dropout(x, p=1 - p, training=True)
    mask = out != 0
    got = sol.dropout_forward(x, p, mask)
    assert_true(got.dtype == dtype, "dtype changed")
    assert_close(got, out, name="dropout_forward")


def test_dropout_forward_expectation_by_enumeration():
    x = torch.tensor([[1.5, -2.0, 0.7, 3.0]], dtype=DT)
    p = 0.35
    Z = _masks(4)
    probs = p ** Z.sum(1) * (1 - p) ** (4 - Z.sum(1))
    outs = np.stack([sol.dropout_forward(x, p, torch.tensor(z[None] > 0)).numpy()[0] for z in Z])
    assert_close(probs @ outs, x.numpy()[0], name="E[out]")
    assert_close(probs @ outs**2, x.numpy()[0] ** 2 / p, name="E[out^2]")


@pytest.mark.parametrize("p", [0.25, 0.9])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dropout_backward_matches_autograd_of_torch_dropout(p, dtype):
    x = (torch.rand(4, 6, generator=_gen(1), dtype=dtype) + 0.5).requires_grad_(True)
    dout = torch.randn(4, 6, generator=_gen(2), dtype=dtype)
    torch.manual_seed(7)
    out = F.dropout(x, p=1 - p, training=True)
    out.backward(dout)
    got = sol.dropout_backward(dout, p, out.detach() != 0)
    assert_true(got.dtype == dtype, "dtype changed")
    assert_close(got, x.grad, name="dropout_backward")


# ---------------------------------------------------------------- exercise 2
@pytest.mark.parametrize("N,D,p", [(2, 3, 0.3), (3, 3, 0.7)])
def test_linreg_objective_equals_enumeration(N, D, p):
    g = _gen(N + D)
    X = torch.randn(N, D, generator=g, dtype=DT)
    y = torch.randn(N, generator=g, dtype=DT)
    w = torch.randn(D, generator=g, dtype=DT)
    Xn, yn, wn = X.numpy(), y.numpy(), w.numpy()
    total = 0.0
    for z in _masks(N * D):
        R = z.reshape(N, D)
        prob = p ** z.sum() * (1 - p) ** (N * D - z.sum())
        total += prob * np.sum((yn - (R * Xn) @ wn) ** 2)
    assert_close(sol.dropout_linreg_objective(X, y, w, p), total, name="objective")


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_linreg_solution_is_scaled_ridge_sklearn(p):
    g = _gen(11)
    X = torch.randn(30, 5, generator=g, dtype=DT) * torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5], dtype=DT)
    y = torch.randn(30, generator=g, dtype=DT)
    gamma = np.sqrt((X.numpy() ** 2).sum(0))
    ridge = Ridge(alpha=(1 - p) / p, fit_intercept=False, solver="svd").fit(X.numpy() / gamma, y.numpy())
    w_expected = ridge.coef_ / gamma / p
    assert_close(sol.dropout_linreg_solution(X, y, p), w_expected, name="w_dropout", rtol=1e-6)


def test_linreg_solution_p1_is_least_squares():
    g = _gen(12)
    X = torch.randn(20, 4, generator=g, dtype=DT)
    y = torch.randn(20, generator=g, dtype=DT)
    ls = LinearRegression(fit_intercept=False).fit(X.numpy(), y.numpy()).coef_
    assert_close(sol.dropout_linreg_solution(X, y, 1.0), ls, name="w at p=1", rtol=1e-6)


# ---------------------------------------------------------------- exercise 3
def test_logistic_excess_hand_case():
    # D = 1, x = 1, delta = 1/2: x~ in {0, 2}, each w.p. 1/2
    b = 0.8
    X = torch.ones(1, 1, dtype=DT)
    A = lambda s: np.log1p(np.exp(s))  # noqa: E731
    expected = 0.5 * (A(0.0) + A(2 * b)) - A(b)
    assert_close(sol.logistic_dropout_excess(X, torch.tensor([b], dtype=DT), 0.5), expected, name="R")


def test_logistic_excess_monte_carlo():
    g = _gen(21)
    X = torch.randn(6, 4, generator=g, dtype=DT)
    beta = torch.randn(4, generator=g, dtype=DT)
    delta = 0.3
    rng = np.random.default_rng(0)
    Z = rng.random((400_000, 4)) > delta
    Xn, bn = X.numpy(), beta.numpy()
    S = (Xn @ (Z * bn).T) / (1 - delta)  # (N, samples)
    mc = np.logaddexp(0, S).mean(1).sum() - np.logaddexp(0, Xn @ bn).sum()
    se = np.logaddexp(0, S).sum(0).std() / np.sqrt(Z.shape[0])
    assert_close(sol.logistic_dropout_excess(X, beta, delta), mc, name="R (MC)", rtol=0, atol=5 * se)


def test_wager_penalty_is_second_order_taylor_with_autograd():
    g = _gen(22)
    X = torch.randn(5, 3, generator=g, dtype=DT)
    beta = torch.randn(3, generator=g, dtype=DT)
    delta = 0.4
    # 1/2 sum_i A''(x_i beta) Var[x~_i beta]; A'' by autograd, Var by enumeration
    s = (X @ beta).clone().requires_grad_(True)
    (d1,) = torch.autograd.grad(F.softplus(s).sum(), s, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), s)
    Z = _masks(3)
    probs = (1 - delta) ** Z.sum(1) * delta ** (3 - Z.sum(1))
    St = (X.numpy() @ (Z * beta.numpy()).T) / (1 - delta)
    var = ((St - (X @ beta).numpy()[:, None]) ** 2) @ probs
    expected = 0.5 * (d2.numpy() * var).sum()
    assert_close(sol.wager_penalty(X, beta, delta), expected, name="R^q")


def test_wager_ratio_tends_to_one():
    g = _gen(23)
    X = torch.randn(8, 5, generator=g, dtype=DT)
    beta = torch.randn(5, generator=g, dtype=DT)
    errs = []
    for t in [1.0, 0.1, 0.01]:
        ratio = sol.wager_penalty(X, t * beta, 0.5) / sol.logistic_dropout_excess(X, t * beta, 0.5)
        errs.append(abs(float(ratio) - 1))
    assert_true(errs[2] < 1e-3 and errs[2] < errs[1] < errs[0], f"|ratio - 1| = {errs}")


# ---------------------------------------------------------------- exercise 4
@pytest.mark.parametrize("p", [0.2, 0.5, 0.75])
def test_ensemble_moments_and_mgf(p):
    g = _gen(31)
    w = torch.randn(6, generator=g, dtype=DT)
    x = torch.randn(6, generator=g, dtype=DT)
    S, probs = sol.dropout_ensemble(w, x, p)
    assert_true(S.shape == (64,) and probs.shape == (64,), "shapes")
    a = (w * x).numpy()
    assert_close(probs.sum(), 1.0, name="sum of probs")
    assert_close(probs @ S, p * a.sum(), name="E[S] (weight scaling)")
    assert_close(probs @ (S - p * a.sum()) ** 2, p * (1 - p) * (a**2).sum(), name="Var[S]")
    for t in [-1.0, 0.5, 2.0]:
        assert_close(probs @ torch.exp(t * S), np.prod(1 - p + p * np.exp(t * a)), name=f"MGF({t})")


def test_nwgm_matches_scipy_gmean():
    rng = np.random.default_rng(32)
    O = rng.uniform(0.05, 0.95, 10)
    P = rng.random(10)
    P /= P.sum()
    G, Gc = scipy.stats.gmean(O, weights=P), scipy.stats.gmean(1 - O, weights=P)
    assert_close(sol.nwgm(torch.tensor(O), torch.tensor(P)), G / (G + Gc), name="NWGM")


@pytest.mark.parametrize("p", [0.3, 0.8])
def test_nwgm_of_sigmoid_ensemble_is_sigmoid_of_mean(p):
    g = _gen(33)
    w = torch.randn(8, generator=g, dtype=DT)
    x = torch.randn(8, generator=g, dtype=DT)
    S, probs = sol.dropout_ensemble(w, x, p)
    expected = 1 / (1 + np.exp(-p * float(w @ x)))
    assert_close(sol.nwgm(torch.sigmoid(S), probs), expected, name="NWGM(sigmoid)")


# ---------------------------------------------------------------- exercise 5
@pytest.mark.parametrize("theta", [0.3, 0.8])
def test_mf_expected_loss_enumeration(theta):
    g = _gen(41)
    Y = torch.randn(5, 4, generator=g, dtype=DT)
    U = torch.randn(5, 3, generator=g, dtype=DT)
    V = torch.randn(4, 3, generator=g, dtype=DT)
    total = 0.0
    for b in _masks(3):
        prob = theta ** b.sum() * (1 - theta) ** (3 - b.sum())
        total += prob * np.sum((Y.numpy() - U.numpy() @ np.diag(b) @ V.numpy().T / theta) ** 2)
    assert_close(sol.dropout_mf_expected_loss(Y, U, V, theta), total, name="E loss")


@pytest.mark.parametrize("n,m,r,rank", [(6, 5, 4, 4), (6, 5, 3, 3), (7, 4, 5, 2), (3, 3, 1, 1)])
def test_equalize(n, m, r, rank):
    g = _gen(n * m + r)
    M = torch.randn(n, rank, generator=g, dtype=DT) @ torch.randn(rank, m, generator=g, dtype=DT)
    U = torch.randn(n, r, generator=g, dtype=DT)
    V = torch.linalg.lstsq(U, M).solution.T  # U V^T = M when rank <= r
    Mn = (U @ V.T).numpy()
    U2, V2 = sol.equalize(U, V)
    nuc = np.linalg.norm(Mn, "nuc")
    assert_close(U2 @ V2.T, Mn, name="U'V'^T", atol=1e-9)
    assert_close(U2.norm(dim=0) * V2.norm(dim=0), np.full(r, nuc / r), name="products", atol=1e-9)
    reg = ((U2**2).sum(0) * (V2**2).sum(0)).sum()
    assert_close(reg, nuc**2 / r, name="regularizer", atol=1e-9)


@pytest.mark.parametrize("lam,r", [(0.5, 6), (2.0, 6), (5.0, 6), (1.0, 2)])
def test_mf_closed_form_matches_cvxpy(lam, r):
    g = _gen(42)
    Y = torch.randn(7, 6, generator=g, dtype=DT)
    if r == 2:  # make the unconstrained convex solution have rank <= r
        Y = torch.randn(7, 2, generator=g, dtype=DT) @ torch.randn(2, 6, generator=g, dtype=DT)
    Mv = cp.Variable((7, 6))
    obj = cp.sum_squares(Y.numpy() - Mv) + lam / r * cp.square(cp.normNuc(Mv))
    cp.Problem(cp.Minimize(obj)).solve(solver=cp.SCS, eps=1e-10, max_iters=200000)
    assert_close(sol.dropout_mf_closed_form(Y, lam, r), Mv.value, name="M", rtol=1e-4, atol=1e-5)


def test_mf_closed_form_rank_constrained_matches_factor_optimization():
    g = _gen(43)
    Y = torch.randn(6, 5, generator=g, dtype=DT)
    lam, r = 0.5, 2  # the convex relaxation has rank > 2 here
    U = (0.5 * torch.randn(6, r, generator=g, dtype=DT)).requires_grad_(True)
    V = (0.5 * torch.randn(5, r, generator=g, dtype=DT)).requires_grad_(True)
    opt = torch.optim.LBFGS([U, V], lr=1, max_iter=3000, tolerance_grad=1e-12, tolerance_change=1e-15,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = ((Y - U @ V.T) ** 2).sum() + lam * ((U**2).sum(0) * (V**2).sum(0)).sum()
        loss.backward()
        return loss

    opt.step(closure)
    assert_close(sol.dropout_mf_closed_form(Y, lam, r), (U @ V.T).detach(), name="M", rtol=1e-5, atol=1e-6)


def test_train_dropout_mf_matches_torch_sgd():
    g = _gen(44)
    Y = torch.randn(5, 4, generator=g, dtype=DT)
    U0 = torch.randn(5, 3, generator=g, dtype=DT)
    V0 = torch.randn(4, 3, generator=g, dtype=DT)
    masks = torch.rand(6, 3, generator=g) < 0.5
    lrs = torch.linspace(0.02, 0.01, 6, dtype=DT)
    theta = 0.5
    U, V = U0.clone().requires_grad_(True), V0.clone().requires_grad_(True)
    opt = torch.optim.SGD([U, V], lr=0.1)
    prods = [(U0.norm(dim=0) * V0.norm(dim=0))]
    for t in range(6):
        for group in opt.param_groups:
            group["lr"] = float(lrs[t])
        opt.zero_grad()
        loss = ((Y - U @ torch.diag(masks[t].to(DT) / theta) @ V.T) ** 2).sum()
        loss.backward()
        opt.step()
        prods.append((U.norm(dim=0) * V.norm(dim=0)).detach())
    U1, V1, P1 = sol.train_dropout_mf(Y, U0, V0, theta, lrs, masks)
    assert_close(U1, U.detach(), name="U")
    assert_close(V1, V.detach(), name="V")
    assert_close(P1, torch.stack(prods), name="products")


def test_train_dropout_mf_reaches_equalized_global_optimum():
    g = _gen(45)
    n, m, r, theta, T = 10, 8, 4, 0.6, 3000
    A, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=DT))
    B, _ = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=DT))
    s = torch.tensor([4.0, 3.0, 2.0, 1.5, 1.0, 0.5, 0.3, 0.1], dtype=DT)
    Y = (A[:, :m] * s) @ B.T
    U0 = 0.3 * torch.randn(n, r, generator=g, dtype=DT)
    V0 = 0.3 * torch.randn(m, r, generator=g, dtype=DT)
    masks = torch.rand(T, r, generator=g) < theta
    lrs = 0.04 / (1 + torch.arange(T, dtype=DT) / 100)
    U, V, P = sol.train_dropout_mf(Y, U0, V0, theta, lrs, masks)
    lam = (1 - theta) / theta
    # independent optimum: the convex problem in M (cvxpy); its rank is <= r for this spectrum
    Mv = cp.Variable((n, m))
    cp.Problem(cp.Minimize(cp.sum_squares(Y.numpy() - Mv) + lam / r * cp.square(cp.normNuc(Mv)))).solve()
    assert_true(np.linalg.matrix_rank(Mv.value, 1e-4) <= r, "test set-up: relaxation rank > r")
    rel = np.linalg.norm((U @ V.T).numpy() - Mv.value) / np.linalg.norm(Mv.value)
    assert_true(rel < 0.1, f"UV^T is {rel:.3f} (relative) from the global optimum")
    cv = float(P[-1].std() / P[-1].mean())
    assert_true(cv < 0.1, f"products not equalized: coefficient of variation {cv:.3f}")
    assert_close(P[-1].mean(), np.linalg.norm(Mv.value, "nuc") / r, name="mean product", rtol=0.1)


# ---------------------------------------------------------------- exercise 6
@pytest.mark.parametrize("act", [torch.relu, torch.tanh])
def test_dropout_net_loss_matches_torch_dropout(act):
    g = _gen(51)
    X = torch.randn(7, 3, generator=g, dtype=DT)
    W = torch.randn(5, 3, generator=g, dtype=DT)
    U = torch.randn(2, 5, generator=g, dtype=DT)
    Y = torch.randn(7, 2, generator=g, dtype=DT)
    p = 0.6
    H = act(F.linear(X, W)) + 0.0
    Hpos = torch.where(H == 0, torch.full_like(H, 1e-3), H)  # so that out != 0 recovers the mask
    torch.manual_seed(5)
    Hd = F.dropout(Hpos, p=1 - p, training=True)
    mask = Hd != 0
    Hd = torch.where(mask, H / p, torch.zeros_like(H))
    expected = F.mse_loss(F.linear(Hd, U), Y, reduction="sum") / 7
    assert_close(sol.dropout_net_loss(U, W, X, Y, p, mask, act), expected, name="loss")


@pytest.mark.parametrize("act,p", [(torch.relu, 0.5), (torch.tanh, 0.7), (lambda z: z, 0.3)])
def test_explicit_regularizer_equals_enumeration(act, p):
    g = _gen(52)
    X = torch.randn(6, 3, generator=g, dtype=DT)
    W = torch.randn(4, 3, generator=g, dtype=DT)
    U = torch.randn(2, 4, generator=g, dtype=DT)
    Y = torch.randn(6, 2, generator=g, dtype=DT)
    H = act(F.linear(X, W))
    plain = F.mse_loss(F.linear(H, U), Y, reduction="sum") / 6
    total = 0.0
    for b in _masks(4):
        prob = p ** b.sum() * (1 - p) ** (4 - b.sum())
        total += prob * F.mse_loss(F.linear(H * torch.tensor(b) / p, U), Y, reduction="sum") / 6
    assert_close(sol.explicit_regularizer(U, W, X, p, act), total - plain, name="regularizer")


def test_explicit_regularizer_matrix_completion_weighted_trace_norm():
    # linear net, one-hot inputs weighted by P, outputs weighted by Q: weighted trace norm
    g = _gen(53)
    n, m, r, p = 5, 4, 4, 0.5
    P = torch.rand(n, generator=g, dtype=DT) + 0.2
    P /= P.sum()
    Q = torch.rand(m, generator=g, dtype=DT) + 0.2
    Q /= Q.sum()
    M = torch.randn(m, n, generator=g, dtype=DT)
    Mw = (Q.sqrt()[:, None] * M * P.sqrt()).numpy()
    A, s, Bt = np.linalg.svd(Mw)
    H = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]) / 2.0
    Ue = (A[:, :r] * np.sqrt(s[:r])) @ H / np.sqrt(Q.numpy())[:, None]
    We = (H.T @ (np.sqrt(s[:r])[:, None] * Bt[:r])) / np.sqrt(P.numpy())
    X = torch.diag((n * P).sqrt())
    Uq = torch.tensor(np.sqrt(Q.numpy())[:, None] * Ue)
    got = sol.explicit_regularizer(Uq, torch.tensor(We), X, p, lambda z: z)
    assert_close(got, (1 - p) / p * np.linalg.norm(Mw, "nuc") ** 2 / r, name="weighted trace norm")


# ---------------------------------------------------------------- exercise 3: dropout training on noised copies
def _noised(X, delta, masks):
    return (masks.to(DT) * X / (1 - delta)).reshape(-1, X.shape[1])


@pytest.mark.parametrize("delta,lam,M", [(0.3, 0.5, 4), (0.6, 0.1, 8)])
def test_fit_dropout_logistic_matches_sklearn_on_stacked_copies(delta, lam, M):
    from sklearn.linear_model import LogisticRegression

    g = _gen(61)
    X = torch.randn(30, 5, generator=g, dtype=DT)
    y = (torch.rand(30, generator=g, dtype=DT) < torch.sigmoid(X @ torch.linspace(-1, 1, 5, dtype=DT))).to(DT)
    masks = torch.rand(M, 30, 5, generator=g) >= delta
    got = sol.fit_dropout_logistic(X, y, delta, masks, lam)
    # sklearn minimises 1/2 ||b||^2 + C sum_rows loss; ours divided by lam: C = 1 / (lam M)
    clf = LogisticRegression(C=1 / (lam * M), fit_intercept=False, tol=1e-12, max_iter=100000)
    clf.fit(_noised(X, delta, masks).numpy(), y.repeat(M).numpy())
    assert_close(got, clf.coef_[0], name="beta vs sklearn on the stacked noised copies", rtol=1e-5, atol=1e-6)


def test_fit_dropout_logistic_lam0_is_stationary_by_autograd():
    g = _gen(62)
    X = torch.randn(40, 4, generator=g, dtype=DT)
    y = (torch.rand(40, generator=g, dtype=DT) < 0.5).to(DT)  # noise labels: not separable
    masks = torch.rand(6, 40, 4, generator=g) >= 0.5
    b = sol.fit_dropout_logistic(X, y, 0.5, masks, 0.0).clone().requires_grad_(True)
    s = _noised(X, 0.5, masks) @ b
    obj = (F.softplus(s) - y.repeat(6) * s).sum() / 6
    (grad,) = torch.autograd.grad(obj, b)
    assert_close(grad, torch.zeros(4, dtype=DT), name="gradient at the fit", rtol=0, atol=1e-7)


def test_dropout_copies_penalize_rare_features_less_than_ridge():
    # Wager et al.: on rare but discriminative features the dropout fit keeps larger weights than ridge
    # at a ridge penalty that gives the same shrinkage to the frequent features.
    g = _gen(63)
    n, d = 200, 6
    X = (torch.rand(n, d, generator=g) < torch.tensor([0.5] * 5 + [0.05])).to(DT)
    beta = torch.tensor([0.5, -0.5, 0.5, -0.5, 0.0, 3.0], dtype=DT)
    y = (torch.rand(n, generator=g, dtype=DT) < torch.sigmoid(X @ beta - 0.2)).to(DT)
    masks = torch.rand(32, n, d, generator=g) >= 0.5
    bd = sol.fit_dropout_logistic(X, y, 0.5, masks, 1e-3)
    from sklearn.linear_model import LogisticRegression

    # ridge strength chosen so that the frequent weights shrink as much as under dropout
    best = None
    for C in np.logspace(-3, 2, 30):
        br = LogisticRegression(C=C, fit_intercept=False, tol=1e-10, max_iter=10000).fit(X.numpy(), y.numpy()).coef_[0]
        gap = abs(np.abs(br[:4]).sum() - float(bd[:4].abs().sum()))
        if best is None or gap < best[0]:
            best = (gap, br)
    br = best[1]
    assert_true(float(bd[5]) > 1.5 * br[5], f"rare weight: dropout {float(bd[5]):.3f}, matched ridge {br[5]:.3f}")


# ---------------------------------------------------------------- exercise 7
def _gd(U0, W0, loss_fn, lrs):
    U, W = U0.clone().requires_grad_(True), W0.clone().requires_grad_(True)
    opt = torch.optim.SGD([U, W], lr=1.0)
    for t in range(len(lrs)):
        opt.param_groups[0]["lr"] = float(lrs[t])
        opt.zero_grad()
        loss_fn(U, W, t).backward()
        opt.step()
    return U.detach(), W.detach()


def _small_net(seed):
    g = _gen(seed)
    X, Y = torch.randn(5, 3, generator=g, dtype=DT), torch.randn(5, 2, generator=g, dtype=DT)
    U0, W0 = torch.randn(2, 3, generator=g, dtype=DT), torch.randn(3, 3, generator=g, dtype=DT)
    return X, Y, U0, W0, g


@pytest.mark.parametrize("act", [torch.relu, torch.tanh])
def test_train_two_layer_plain_and_dropout_match_torch_sgd(act):
    X, Y, U0, W0, g = _small_net(71)
    p, lrs = 0.6, torch.linspace(0.05, 0.01, 6, dtype=DT)
    masks = torch.rand(6, 5, 3, generator=g) < p
    Up, Wp = sol.train_two_layer(U0, W0, X, Y, p, lrs, None, act, "plain")
    Ue, We = _gd(U0, W0, lambda U, W, t: F.mse_loss(F.linear(act(F.linear(X, W)), U), Y, reduction="sum") / 5, lrs)
    assert_close(Up, Ue, name="U plain")
    assert_close(Wp, We, name="W plain")
    Ud, Wd = sol.train_two_layer(U0, W0, X, Y, p, lrs, masks, act, "dropout")
    Ue, We = _gd(U0, W0, lambda U, W, t: F.mse_loss(F.linear(act(F.linear(X, W)) * masks[t] / p, U), Y,
                                                    reduction="sum") / 5, lrs)
    assert_close(Ud, Ue, name="U dropout")
    assert_close(Wd, We, name="W dropout")


@pytest.mark.parametrize("act,p", [(torch.relu, 0.5), (torch.tanh, 0.7)])
def test_train_two_layer_explicit_is_gd_on_mask_averaged_loss(act, p):
    # oracle: the dropout loss averaged over all 2^H masks of each sample (independent across samples),
    # differentiated by torch.autograd -- no use of the closed-form regularizer
    X, Y, U0, W0, _ = _small_net(72)
    B = torch.tensor(_masks(3), dtype=DT)  # (8, 3)
    probs = p ** B.sum(1) * (1 - p) ** (3 - B.sum(1))

    def avg_loss(U, W, t):
        H = act(F.linear(X, W))  # (N, H)
        out = F.linear(H[:, None, :] * B[None] / p, U)  # (N, 8, K)
        return ((((Y[:, None, :] - out) ** 2).sum(-1) * probs).sum(1)).mean()

    lrs = torch.linspace(0.04, 0.02, 5, dtype=DT)
    U, W = sol.train_two_layer(U0, W0, X, Y, p, lrs, None, act, "explicit")
    Ue, We = _gd(U0, W0, avg_loss, lrs)
    assert_close(U, Ue, name="U explicit")
    assert_close(W, We, name="W explicit")


def test_train_two_layer_rejects_unknown_mode_and_keeps_inputs():
    X, Y, U0, W0, _ = _small_net(73)
    U0c, W0c = U0.clone(), W0.clone()
    sol.train_two_layer(U0, W0, X, Y, 0.5, torch.tensor([0.1], dtype=DT), None, torch.relu, "explicit")
    assert_close(U0, U0c, name="U0 unchanged")
    assert_close(W0, W0c, name="W0 unchanged")
    with pytest.raises(ValueError):
        sol.train_two_layer(U0, W0, X, Y, 0.5, torch.tensor([0.1], dtype=DT), None, torch.relu, "ridge")


def test_explicit_regularizer_training_ends_near_dropout_training():
    # the notebook's experiment on another seed: plain training overfits the noise, training on L + R
    # ends with the test error of dropout training
    g = _gen(74)
    N, D, K, H, T, p = 40, 8, 8, 16, 300, 0.5
    B = torch.randn(K, 2, generator=g, dtype=DT) @ torch.randn(2, D, generator=g, dtype=DT) / D**0.5
    X, Xt = torch.randn(N, D, generator=g, dtype=DT), torch.randn(500, D, generator=g, dtype=DT)
    Y, Yt = X @ B.T + torch.randn(N, K, generator=g, dtype=DT), Xt @ B.T
    W0, U0 = 0.3 * torch.randn(H, D, generator=g, dtype=DT), 0.3 * torch.randn(K, H, generator=g, dtype=DT)
    masks = torch.rand(T, N, H, generator=g) < p
    lrs = 0.05 / (1 + torch.arange(T, dtype=DT) / (T / 10))
    err = {}
    for mode in ("plain", "dropout", "explicit"):
        U, W = sol.train_two_layer(U0, W0, X, Y, p, lrs, masks, torch.relu, mode)
        err[mode] = float(((torch.relu(Xt @ W.T) @ U.T - Yt) ** 2).sum(1).mean())
    assert_true(err["plain"] > err["dropout"] + 0.5, f"{err}")
    assert_true(abs(err["explicit"] - err["dropout"]) < 0.25 * (err["plain"] - err["dropout"]), f"{err}")
