"""Unit tests of solutions.ps08_ntk against independent oracles.

Oracles: scipy.integrate.quad for the Gaussian expectations of the NNGP/NTK recursions, Monte Carlo over
random networks (the NNGP is their output covariance), torch.autograd
per-sample gradients of hand-built networks, torch.func.jvp + torch.optim.SGD for the linearized
model, Monte Carlo over random features, scipy.linalg.cho_solve, sklearn KernelRidge, closed forms.
"""

import copy
import itertools
import math

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import scipy.special
import torch
from sklearn.kernel_ridge import KernelRidge

from coursekit.checks import assert_close
from solutions.ps08_ntk import (
    NTKMLP,
    arora_gram,
    critical_lr,
    empirical_ntk,
    fit_distance_to_init,
    generalization_bound,
    kernel_ridge_predict,
    linearization_gap,
    linearized_predictions,
    predicted_residual_curve,
    relu_nngp,
    relu_ntk,
)

DT = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny problems: one thread is faster (and restored afterwards for other test modules)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


_cdf = scipy.special.ndtr  # standard normal CDF and density (scipy.stats.norm is ~20x slower per call)


def _pdf(z):
    return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def _gauss_relu_moments(a, b, c):
    """E[relu(u) relu(v)] and P(u > 0, v > 0) for (u, v) ~ N(0, [[a, c], [c, b]]), by 1-D quadrature."""
    rho = c / math.sqrt(a * b)
    s = math.sqrt(max(1 - rho**2, 0.0))

    def cond_relu(z):  # E[relu(rho z + s Z)] for Z ~ N(0, 1)
        m = rho * z
        if s == 0:
            return max(m, 0.0)
        return m * _cdf(m / s) + s * _pdf(m / s)

    def cond_step(z):
        m = rho * z
        return float(m > 0) if s == 0 else _cdf(m / s)

    pdf = _pdf
    e_relu = scipy.integrate.quad(lambda z: z * cond_relu(z) * pdf(z), 0, np.inf, epsabs=1e-13)[0]
    e_step = scipy.integrate.quad(lambda z: cond_step(z) * pdf(z), 0, np.inf, epsabs=1e-13)[0]
    return math.sqrt(a * b) * e_relu, e_step


def _quad_ntk(x, xp, depth, wv, bv):
    d = len(x)
    s, q1, q2 = wv * x @ xp / d + bv, wv * x @ x / d + bv, wv * xp @ xp / d + bv
    theta = s
    for _ in range(depth):
        e_relu, e_step = _gauss_relu_moments(q1, q2, s)
        s, s_dot = wv * e_relu + bv, wv * e_step
        theta = theta * s_dot + s
        q1 = wv * _gauss_relu_moments(q1, q1, q1)[0] + bv
        q2 = wv * _gauss_relu_moments(q2, q2, q2)[0] + bv
    return theta


@pytest.mark.parametrize("depth,wv,bv", [(0, 1.3, 0.2), (1, 2.0, 0.0), (2, 1.5, 0.4), (3, 2.0, 0.1)])
def test_relu_ntk_matches_quadrature(depth, wv, bv):
    rng = np.random.default_rng(depth)
    X1, X2 = rng.normal(size=(3, 4)), rng.normal(size=(2, 4))
    X2[0] = -0.7 * X1[0]  # an obtuse pair
    expected = np.array([[_quad_ntk(a, b, depth, wv, bv) for b in X2] for a in X1])
    got = relu_ntk(torch.tensor(X1), torch.tensor(X2), depth, wv, bv)
    assert_close(got, expected, name="relu_ntk", rtol=1e-6, atol=1e-9)


def _quad_nngp(x, xp, depth, wv, bv):
    d = len(x)
    s, q1, q2 = wv * x @ xp / d + bv, wv * x @ x / d + bv, wv * xp @ xp / d + bv
    for _ in range(depth):
        s = wv * _gauss_relu_moments(q1, q2, s)[0] + bv
        q1 = wv * _gauss_relu_moments(q1, q1, q1)[0] + bv
        q2 = wv * _gauss_relu_moments(q2, q2, q2)[0] + bv
    return s


@pytest.mark.parametrize("depth,wv,bv", [(0, 1.3, 0.2), (1, 2.0, 0.0), (2, 1.5, 0.4), (3, 2.4, 0.1)])
def test_relu_nngp_matches_quadrature(depth, wv, bv):
    rng = np.random.default_rng(10 + depth)
    X1, X2 = rng.normal(size=(3, 4)), rng.normal(size=(2, 4))
    X2[0] = -0.7 * X1[0]  # an obtuse pair
    expected = np.array([[_quad_nngp(a, b, depth, wv, bv) for b in X2] for a in X1])
    got = relu_nngp(torch.tensor(X1), torch.tensor(X2), depth, wv, bv)
    assert_close(got, expected, name="relu_nngp", rtol=1e-6, atol=1e-9)


def test_relu_nngp_is_the_output_covariance_of_random_networks():
    """Monte Carlo over 40 random width-600 depth-2 networks (full weight matrices), last layer averaged exactly."""
    X = torch.randn(4, 3, generator=torch.Generator().manual_seed(7), dtype=DT)
    wv, bv = 1.6, 0.2
    acc = torch.zeros(4, 4, dtype=DT)
    for seed in range(40):
        net = _HandNet([3, 600, 600, 1], wv, bv, seed)
        h = X
        for W, b in zip(list(net.W)[:-1], list(net.b)[:-1]):
            h = torch.relu(math.sqrt(wv / W.shape[1]) * h @ W.detach().T + math.sqrt(bv) * b.detach())
        acc += wv * h @ h.T / h.shape[1] + bv  # Cov(f | last hidden layer)
    mc = acc / 40
    K = relu_nngp(X, X, 2, wv, bv)
    assert ((mc - K).abs().max() / K.diagonal().max()).item() < 0.03


def test_relu_nngp_is_the_last_layer_part_of_relu_ntk():
    """Theta^(L+1) = Theta^(L) dot-Sigma^(L+1) + Sigma^(L+1): with sigma_w^2 = 2 and no bias, dot-Sigma(x, x) = 1."""
    X = torch.randn(5, 3, generator=torch.Generator().manual_seed(8), dtype=DT)
    for depth in range(4):
        diag_ntk = torch.diagonal(relu_ntk(X, X, depth, 2.0, 0.0))
        diag_nngp = torch.diagonal(relu_nngp(X, X, depth, 2.0, 0.0))
        assert_close(diag_ntk, (depth + 1) * diag_nngp, name=f"Theta(x, x) = (L + 1) Sigma(x, x) at depth {depth}")
    K1 = relu_ntk(X, X, 1, 1.0, 0.0)
    assert_close(relu_ntk(X, X, 0, 1.0, 0.0), relu_nngp(X, X, 0, 1.0, 0.0), name="depth 0: NTK = NNGP")
    # the first layer's contribution Sigma^(1) * dot-Sigma^(2) is a Schur product of PSD matrices: PSD
    assert torch.linalg.eigvalsh(K1 - relu_nngp(X, X, 1, 1.0, 0.0)).min().item() >= -1e-12


def test_relu_ntk_depth1_closed_form_and_psd():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 3))
    n = np.linalg.norm(X, axis=1)
    cos = np.clip(X @ X.T / np.outer(n, n), -1, 1)
    th = np.arccos(cos)
    # sigma_w^2 = 1, no bias: Theta = x.x'/D (pi - th)/(2 pi) + |x||x'|/D (sin th + (pi - th) cos th)/(2 pi)
    expected = X @ X.T / 3 * (np.pi - th) / (2 * np.pi) + np.outer(n, n) / 3 * (np.sin(th) + (np.pi - th) * cos) / (2 * np.pi)
    K = relu_ntk(torch.tensor(X), torch.tensor(X), 1, 1.0, 0.0)
    assert_close(K, expected, name="relu_ntk depth 1")
    assert np.linalg.eigvalsh(relu_ntk(torch.tensor(X), torch.tensor(X), 3, 2.0, 0.1).numpy()).min() > -1e-10


def _autograd_ntk(model, X1, X2):
    def grads(X):
        rows = []
        for x in X:
            g = torch.autograd.grad(model(x[None]).sum(), list(model.parameters()))
            rows.append(torch.cat([t.reshape(-1) for t in g]))
        return torch.stack(rows)

    return grads(X1) @ grads(X2).T


class _HandNet(torch.nn.Module):
    """An NTK-parameterised ReLU net written independently of NTKMLP."""

    def __init__(self, dims, wv, bv, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.randn(o, i, generator=g, dtype=DT)) for i, o in itertools.pairwise(dims)]
        )
        self.b = torch.nn.ParameterList([torch.nn.Parameter(torch.randn(o, generator=g, dtype=DT)) for o in dims[1:]])
        self.sw, self.sb = math.sqrt(wv), math.sqrt(bv)

    def forward(self, x):
        for i, (W, b) in enumerate(zip(self.W, self.b)):
            x = self.sw * x @ W.T / math.sqrt(W.shape[1]) + self.sb * b
            if i < len(self.W) - 1:
                x = torch.relu(x)
        return x.reshape(-1)


def test_relu_ntk_is_the_wide_limit():
    X = torch.randn(5, 4, generator=torch.Generator().manual_seed(1), dtype=DT)
    K = relu_ntk(X, X, 2, 2.0, 0.2)
    emp = sum(_autograd_ntk(_HandNet([4, 1500, 1500, 1], 2.0, 0.2, s), X, X) for s in range(2)) / 2
    assert ((emp - K).norm() / K.norm()).item() < 0.08


def test_ntkmlp_structure_forward_and_init():
    g = torch.Generator().manual_seed(0)
    m = NTKMLP(3, 400, 2, 1.7, 0.3, generator=g)
    assert [tuple(layer.weight.shape) for layer in m.layers] == [(400, 3), (400, 400), (1, 400)]
    W = m.layers[1].weight.detach()
    assert abs(W.mean().item()) < 0.01 and abs(W.std().item() - 1) < 0.01
    X = torch.randn(7, 3, dtype=DT)
    h = X
    for i, layer in enumerate(m.layers):  # same net via torch.nn.functional.linear with rescaled parameters
        h = torch.nn.functional.linear(h, layer.weight * math.sqrt(1.7 / layer.in_features), layer.bias * math.sqrt(0.3))
        h = torch.nn.functional.relu(h) if i < 2 else h
    assert_close(m(X), h[:, 0], name="NTKMLP forward")
    m2 = NTKMLP(3, 400, 2, 1.7, 0.3, generator=torch.Generator().manual_seed(0))
    m3 = NTKMLP(3, 400, 2, 1.7, 0.3, generator=torch.Generator().manual_seed(0))
    assert_close(m2(X), m3(X), name="same seed, same network")


def test_ntkmlp_output_variance_is_nngp():
    """Var f(x) over initialisations = Sigma^(L+1)(x, x) = q_{L+1}, with q_{l+1} = sigma_w^2 q_l / 2 + sigma_b^2."""
    x = torch.tensor([[1.0, -2.0, 0.5]], dtype=DT)
    g = torch.Generator().manual_seed(3)
    outs = torch.stack([NTKMLP(3, 64, 2, 2.0, 0.5, generator=g)(x)[0] for _ in range(3000)])
    q = 2.0 * (x @ x.T).item() / 3 + 0.5
    for _ in range(2):
        q = 2.0 * q / 2 + 0.5
    assert abs(outs.var().item() / q - 1) < 0.1


def test_empirical_ntk_matches_autograd():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1)
    ).double()
    X1, X2 = torch.randn(5, 3, dtype=DT), torch.randn(3, 3, dtype=DT)
    before = [p.detach().clone() for p in model.parameters()]
    assert_close(empirical_ntk(model, X1, X2), _autograd_ntk(model, X1, X2), name="empirical_ntk")
    for p, p0 in zip(model.parameters(), before):
        assert_close(p, p0, name="parameters unchanged")


def test_empirical_ntk_linear_model_closed_form():
    model = torch.nn.Linear(4, 1).double()
    X1, X2 = torch.randn(3, 4, dtype=DT), torch.randn(2, 4, dtype=DT)
    assert_close(empirical_ntk(model, X1, X2), X1 @ X2.T + 1, name="linear-model NTK = X1 X2^T + 1")


def test_linearized_predictions_match_sgd_on_linearized_network():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 20), torch.nn.Tanh(), torch.nn.Linear(20, 1)).double()
    X, Xt = torch.randn(6, 3, dtype=DT), torch.randn(4, 3, dtype=DT)
    y = torch.randn(6, dtype=DT)
    p0 = {k: v.detach().clone() for k, v in net.named_parameters()}
    delta = {k: torch.zeros_like(v, requires_grad=True) for k, v in p0.items()}

    def f_lin(d, inputs):  # f_0 + J_0 delta, via torch.func.jvp
        out, tangent = torch.func.jvp(lambda p: torch.func.functional_call(net, p, (inputs,)).reshape(-1), (p0,), (d,))
        return out + tangent

    lr, steps = 0.05, 25
    opt = torch.optim.SGD(list(delta.values()), lr=lr)
    loss_grad = torch.func.grad(lambda d: 0.5 * ((f_lin(d, X) - y) ** 2).sum())
    for _ in range(steps):
        grads = loss_grad({k: v.detach() for k, v in delta.items()})
        for k, v in delta.items():
            v.grad = grads[k]
        opt.step()
    K, Kt = _autograd_ntk(net, X, X), _autograd_ntk(net, Xt, X)
    with torch.no_grad():
        f_tr, f_te = linearized_predictions(K, Kt, net(X).reshape(-1), net(Xt).reshape(-1), y, lr, steps)
        assert_close(f_tr, f_lin(delta, X), name="train outputs", rtol=1e-6, atol=1e-8)
        assert_close(f_te, f_lin(delta, Xt), name="test outputs", rtol=1e-6, atol=1e-8)


def test_linearized_predictions_limits():
    rng = np.random.default_rng(2)
    A = rng.normal(size=(5, 5))
    K = A @ A.T / 5 + 0.5 * np.eye(5)
    Kt, f0, f0t, y = rng.normal(size=(3, 5)), rng.normal(size=5), rng.normal(size=3), rng.normal(size=5)
    args = [torch.tensor(v) for v in (K, Kt, f0, f0t, y)]
    f_tr, f_te = linearized_predictions(*args, 0.1, 0)
    assert_close(f_tr, f0, name="t = 0 train")
    assert_close(f_te, f0t, name="t = 0 test")
    lr = 1.0 / np.linalg.eigvalsh(K).max()
    f_tr, f_te = linearized_predictions(*args, lr, 3000)
    assert_close(f_tr, y, name="t = inf train", rtol=1e-6, atol=1e-8)
    assert_close(f_te, f0t + Kt @ np.linalg.solve(K, y - f0), name="t = inf test", rtol=1e-6, atol=1e-8)


def test_arora_gram_monte_carlo_and_closed_form():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4, 3))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    W = rng.normal(size=(400_000, 3))
    act = (W @ X.T >= 0).astype(float)
    mc = (act.T @ act / len(W)) * (X @ X.T)
    H = arora_gram(torch.tensor(X))
    assert_close(H, mc, name="H^infty vs Monte Carlo", rtol=0, atol=5e-3)
    assert_close(torch.diagonal(H), np.full(4, 0.5), name="diag H = 1/2")
    # orthogonal inputs: H_ij = 0; antipodal inputs: H_ij = 0
    E = torch.eye(3, dtype=DT)
    assert_close(arora_gram(torch.cat([E, -E[:1]])), np.diag([0.5, 0.5, 0.5, 0.5]), name="orthogonal / antipodal")


def test_generalization_bound_cho_solve():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(7, 7))
    H, y = A @ A.T + np.eye(7), rng.normal(size=7)
    expected = np.sqrt(2 * y @ scipy.linalg.cho_solve(scipy.linalg.cho_factor(H), y) / 7)
    assert_close(generalization_bound(torch.tensor(H), torch.tensor(y)), expected, name="bound")
    # H = c I: bound = sqrt(2 |y|^2 / (c n))
    assert_close(generalization_bound(3 * torch.eye(4, dtype=DT), torch.ones(4, dtype=DT)), math.sqrt(2 / 3), name="H = 3I")


def test_predicted_residual_curve_matches_iteration():
    rng = np.random.default_rng(2)
    A = rng.normal(size=(6, 6))
    H, y, lr = A @ A.T / 6 + 0.1 * np.eye(6), rng.normal(size=6), 0.3
    r, norms = y.copy(), []
    for _ in range(21):  # u(k+1) = u(k) + lr H (y - u(k)), u(0) = 0
        norms.append(np.linalg.norm(r))
        r = r - lr * H @ r
    assert_close(predicted_residual_curve(torch.tensor(H), torch.tensor(y), lr, 20), np.array(norms), name="curve")


def test_kernel_ridge_matches_sklearn():
    rng = np.random.default_rng(3)
    Z = rng.normal(size=(12, 4))
    K = Z @ Z.T + 0.1 * np.eye(12)
    y = rng.normal(size=9)
    for ridge in (0.5, 2.0):
        kr = KernelRidge(alpha=ridge, kernel="precomputed").fit(K[:9, :9], y)
        got = kernel_ridge_predict(torch.tensor(K[:9, :9]), torch.tensor(K[9:, :9]), torch.tensor(y), ridge)
        assert_close(got, kr.predict(K[9:, :9]), name=f"ridge {ridge}", rtol=1e-6, atol=1e-9)
    got = kernel_ridge_predict(torch.tensor(K[:9, :9]), torch.tensor(K[:9, :9]), torch.tensor(y), 0.0)
    assert_close(got, y, name="ridge 0 interpolates", rtol=1e-6, atol=1e-8)


def test_fit_distance_to_init_matches_sgd():
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)).double()
    ref = copy.deepcopy(net)
    X, y = torch.randn(10, 2, dtype=DT), torch.randn(10, dtype=DT)
    losses = fit_distance_to_init(net, X, y, 0.7, 0.02, 30)
    p0 = [p.detach().clone() for p in ref.parameters()]
    opt = torch.optim.SGD(ref.parameters(), lr=0.02)
    ref_losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = 0.5 * torch.nn.functional.mse_loss(ref(X)[:, 0], y, reduction="sum")
        loss = loss + 0.35 * sum(torch.sum((p - q) ** 2) for p, q in zip(ref.parameters(), p0))
        ref_losses.append(loss.item())
        loss.backward()
        opt.step()
    assert_close(losses, np.array(ref_losses), name="losses", rtol=1e-8, atol=1e-10)
    for p, q in zip(net.parameters(), ref.parameters()):
        assert_close(p, q, name="parameters", rtol=1e-8, atol=1e-10)


def test_wide_net_with_penalty_approaches_kernel_ridge():
    """Hu, Li & Yu (2019): the regularised wide network ends near f_0 + Theta (Theta + lambda I)^{-1} (y - f_0)."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(12, 3, generator=g, dtype=DT)
    y = torch.sign(X[:, 0])
    net = _HandNet([3, 4000, 1], 2.0, 0.0, 5)
    with torch.no_grad():
        f0 = net(X)
    K = _autograd_ntk(net, X, X)
    target = f0 + K @ torch.linalg.solve(K + 1.0 * torch.eye(12, dtype=DT), y - f0)
    fit_distance_to_init(net, X, y, 1.0, 1.0 / (torch.linalg.eigvalsh(K).max().item() + 1.0), 400)
    with torch.no_grad():
        assert ((net(X) - target).norm() / (target - f0).norm()).item() < 0.05


def _standard_mlp(in_dim, width, wv, bv, g):
    l1, l2 = torch.nn.Linear(in_dim, width, dtype=DT), torch.nn.Linear(width, 1, dtype=DT)
    with torch.no_grad():
        for layer in (l1, l2):
            layer.weight.normal_(0.0, math.sqrt(wv / layer.in_features), generator=g)
            layer.bias.normal_(0.0, math.sqrt(bv), generator=g)
    return torch.nn.Sequential(l1, torch.nn.ReLU(), l2)


def test_critical_lr_is_the_divergence_threshold_of_linearised_gradient_descent():
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(3, 9), torch.nn.Tanh(), torch.nn.Linear(9, 1)).double()
    X = torch.randn(6, 3, dtype=DT)
    eta = critical_lr(net, X)
    assert isinstance(eta, float)
    K = _autograd_ntk(net, X, X)
    r0 = torch.randn(6, dtype=DT)
    for factor, grows in ((0.98, False), (1.02, True)):
        r = r0.clone()
        for _ in range(600):
            r = r - factor * eta * K @ r
        assert (r.norm() > r0.norm()).item() == grows, factor
    lin = torch.nn.Linear(4, 1).double()
    Z = torch.randn(5, 4, dtype=DT)
    assert_close(critical_lr(lin, Z), 2 / np.linalg.eigvalsh((Z @ Z.T + 1).numpy()).max(), name="linear model")


def test_critical_lr_width_exponents_standard_vs_ntk():
    g = torch.Generator().manual_seed(9)
    X = torch.randn(6, 3, generator=g, dtype=DT)
    widths = [128, 512, 2048]
    # lambda_max fluctuates by ~10% at these widths: average the critical learning rate over 4 networks per width
    std = [np.mean([critical_lr(_standard_mlp(3, n, 2.0, 0.1, g), X) for _ in range(4)]) for n in widths]
    ntk = [np.mean([critical_lr(_HandNet([3, n, 1], 2.0, 0.1, 10 * n + s), X) for s in range(4)]) for n in widths]
    a_std = np.polyfit(np.log(widths), np.log(std), 1)[0]
    a_ntk = np.polyfit(np.log(widths), np.log(ntk), 1)[0]
    assert -1.15 < a_std < -0.85, a_std
    assert abs(a_ntk) < 0.15, a_ntk
    limit = 2 / torch.linalg.eigvalsh(relu_ntk(X, X, 1, 2.0, 0.1)).max().item()
    assert abs(ntk[-1] / limit - 1) < 0.15


def test_linearization_gap_matches_jvp_linearisation_and_sgd():
    """Oracle: the linearised model f_0 + J_0 delta via torch.func.jvp, both models trained by torch.optim.SGD."""
    torch.manual_seed(4)
    net = torch.nn.Sequential(torch.nn.Linear(2, 12), torch.nn.Tanh(), torch.nn.Linear(12, 1)).double()
    ref = copy.deepcopy(net)
    X, Xt, y = torch.randn(6, 2, dtype=DT), torch.randn(3, 2, dtype=DT), torch.randn(6, dtype=DT)
    lr, steps = 0.04, 20
    gaps = linearization_gap(net, X, y, Xt, lr, steps)
    p0 = {k: v.detach().clone() for k, v in ref.named_parameters()}
    delta = {k: torch.zeros_like(v, requires_grad=True) for k, v in p0.items()}

    ref0 = copy.deepcopy(ref)  # frozen copy at initialisation: f_lin(d, x) = f_0(x) + J_0(x) d

    def f_lin(d, inputs):
        out, tangent = torch.func.jvp(lambda p: torch.func.functional_call(ref0, p, (inputs,)).reshape(-1), (p0,), (d,))
        return out + tangent

    opt_lin = torch.optim.SGD(list(delta.values()), lr=lr)
    opt_net = torch.optim.SGD(ref.parameters(), lr=lr)
    loss_grad = torch.func.grad(lambda d: 0.5 * ((f_lin(d, X) - y) ** 2).sum())
    expected = []
    for k in range(steps + 1):
        with torch.no_grad():
            expected.append((ref(Xt).reshape(-1) - f_lin({kk: v.detach() for kk, v in delta.items()}, Xt)).norm().item())
        if k == steps:
            break
        grads = loss_grad({kk: v.detach() for kk, v in delta.items()})
        for kk, v in delta.items():
            v.grad = grads[kk]
        opt_lin.step()
        opt_net.zero_grad()
        (0.5 * ((ref(X).reshape(-1) - y) ** 2).sum()).backward()
        opt_net.step()
    assert gaps.shape == (steps + 1,)
    assert_close(gaps, np.array(expected), name="gap curve", rtol=1e-6, atol=1e-10)
    assert max(expected) > 1e-3
    for p, q in zip(net.parameters(), ref.parameters()):
        assert_close(p, q, name="model trained in place", rtol=1e-8, atol=1e-12)


def test_linearization_gap_shrinks_with_width():
    g = torch.Generator().manual_seed(11)
    X, Xt = torch.randn(8, 3, generator=g, dtype=DT), torch.randn(4, 3, generator=g, dtype=DT)
    y = torch.sin(2 * X[:, 0]) + X[:, 1]
    lr = 0.5 / torch.linalg.eigvalsh(relu_ntk(X, X, 1, 2.0, 0.1)).max().item()
    gap = {
        n: np.mean(
            [linearization_gap(_HandNet([3, n, 1], 2.0, 0.1, 100 * n + s), X, y, Xt, lr, 50).max().item() for s in range(3)]
        )
        for n in (64, 1024)
    }
    assert gap[1024] / gap[64] < 0.5, gap
