"""Unit tests of solutions.ps01_intro against independent oracles.

numpy.interp, torch.optim, torch.autograd, torch.nn.functional / torch.nn modules,
scikit-learn PCA, scipy.linalg.subspace_angles and closed forms.
"""

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import scipy.stats
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA

from coursekit.checks import assert_close
from solutions import ps01_intro as ps

DT = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # the problems are tiny: one thread avoids contention on a busy machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _eval_net(x, w, b, a, c):
    return c + np.maximum(np.outer(x, w) + b, 0.0) @ a


# ---------------------------------------------------------------- ex1
@pytest.mark.parametrize("K", [2, 3, 7, 25])
def test_relu_interpolant_matches_numpy_interp(K):
    rng = np.random.default_rng(K)
    knots = np.sort(rng.uniform(-3, 3, K)) + np.arange(K) * 1e-3
    values = rng.normal(size=K)
    w, b, a, c = ps.relu_interpolant(knots, values)
    x = np.concatenate([rng.uniform(-6, 6, 400), knots])
    assert_close(_eval_net(x, w, b, a, c), np.interp(x, knots, values), name="network", rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------- ex2
def _quadratic(P, seed):
    g = torch.Generator().manual_seed(seed)
    Q = torch.randn(P, P, generator=g, dtype=DT)
    A = Q @ Q.T / P + 0.1 * torch.eye(P, dtype=DT)
    bvec = torch.randn(P, generator=g, dtype=DT)
    theta0 = torch.randn(P, generator=g, dtype=DT)
    return A, bvec, theta0


def _torch_trajectory(opt_cls, kwargs, A, bvec, theta0, n):
    p = torch.nn.Parameter(theta0.clone())
    opt = opt_cls([p], **kwargs)
    out = []
    for _ in range(n):
        opt.zero_grad()
        (0.5 * p @ A @ p - bvec @ p).backward()
        opt.step()
        out.append(p.detach().clone())
    return torch.stack(out)


def _our_trajectory(step, n_state, A, bvec, theta0, n, **hp):
    theta, state, out = theta0.clone(), [torch.zeros_like(theta0) for _ in range(n_state)], []
    for t in range(1, n + 1):
        grad = A @ theta - bvec
        if step is ps.adam_step:
            theta, *state = step(theta, grad, *state, t, **hp)
        else:
            theta, *state = step(theta, grad, *state, **hp)
        out.append(theta.clone())
    return torch.stack(out)


OPTIMIZERS = [
    (ps.momentum_step, 1, {"lr": 0.05, "gamma": 0.9}, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}),
    (ps.nesterov_step, 1, {"lr": 0.05, "gamma": 0.8}, torch.optim.SGD, {"lr": 0.05, "momentum": 0.8, "nesterov": True}),
    (ps.adagrad_step, 1, {"lr": 0.3, "eps": 0.1}, torch.optim.Adagrad, {"lr": 0.3, "eps": 0.1}),
    (
        ps.rmsprop_step,
        1,
        {"lr": 0.01, "alpha": 0.9, "eps": 0.05},
        torch.optim.RMSprop,
        {"lr": 0.01, "alpha": 0.9, "eps": 0.05},
    ),
    (
        ps.adam_step,
        2,
        {"lr": 0.02, "beta1": 0.8, "beta2": 0.95, "eps": 1e-3},
        torch.optim.Adam,
        {"lr": 0.02, "betas": (0.8, 0.95), "eps": 1e-3},
    ),
]


@pytest.mark.parametrize("step,n_state,hp,opt_cls,kw", OPTIMIZERS, ids=lambda o: getattr(o, "__name__", ""))
def test_optimizer_matches_torch_optim(step, n_state, hp, opt_cls, kw):
    A, bvec, theta0 = _quadratic(6, 0)
    ours = _our_trajectory(step, n_state, A, bvec, theta0, 60, **hp)
    ref = _torch_trajectory(opt_cls, kw, A, bvec, theta0, 60)
    assert_close(ours, ref, name=f"{step.__name__} trajectory")


# ---------------------------------------------------------------- ex3
def _mlp_params(seed, N=7, D=4, H=5, C=3):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g, dtype=DT) for s in [(N, D), (N, C), (D, H), (H,), (H, C), (C,)]]


def test_mlp_forward_matches_torch_modules():
    X, _, W1, b1, W2, b2 = _mlp_params(1)
    ref = F.linear(torch.tanh(F.linear(X, W1.T, b1)), W2.T, b2)
    assert_close(ps.mlp_forward(X, W1, b1, W2, b2), ref, name="Yhat")


def test_mlp_loss_and_grads_match_autograd():
    X, Y, *params = _mlp_params(2)
    leaves = [p.clone().requires_grad_() for p in params]
    W1, b1, W2, b2 = leaves
    Yhat = F.linear(torch.tanh(F.linear(X, W1.T, b1)), W2.T, b2)
    ref_loss = 0.5 * Y.shape[1] * F.mse_loss(Yhat, Y)
    ref_grads = torch.autograd.grad(ref_loss, leaves)
    loss, *grads = ps.mlp_loss_and_grads(X, Y, *params)
    assert_close(loss, ref_loss.detach(), name="loss")
    for name, g, r in zip(["dW1", "db1", "dW2", "db2"], grads, ref_grads):
        assert_close(g, r, name=name)


def test_numerical_gradient_matches_autograd():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 4, generator=g, dtype=DT)
    x0 = x.clone()

    def f(z):
        return (z**3).sum() + torch.sin(z).prod()

    xr = x.clone().requires_grad_()
    (ref,) = torch.autograd.grad(f(xr), xr)
    num = ps.numerical_gradient(f, x, h=1e-4)
    assert_close(num, ref, name="numerical gradient", rtol=1e-6, atol=1e-7)
    assert_close(x, x0, name="x after the call")
    # centred difference of x^3 is exactly 3 x^2 + h^2 (a one-sided one gives 3 x^2 + 3 x h + h^2)
    z = torch.tensor([2.0, -1.0], dtype=DT)
    num = ps.numerical_gradient(lambda t: (t**3).sum(), z, h=0.1)
    assert_close(num, 3 * z**2 + 0.01, name="centred difference of x^3, h = 0.1", rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- ex4
def _pca_data(seed, N=400, D=8, mean=3.0):
    g = torch.Generator().manual_seed(seed)
    lam = torch.tensor([4.0, 2.5, 1.5, 0.3, 0.2, 0.1, 0.05, 0.02], dtype=DT)[:D]
    Q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=DT))
    X = torch.randn(N, D, generator=g, dtype=DT) * lam.sqrt() @ Q.T + mean * torch.randn(D, generator=g, dtype=DT)
    return X


def test_principal_subspace_matches_sklearn_pca():
    X = _pca_data(4)
    N = X.shape[0]
    U, lam = ps.principal_subspace(X, 3)
    pca = PCA().fit(X.numpy())
    assert_close(lam, pca.explained_variance_ * (N - 1) / N, name="eigenvalues")
    Vk = pca.components_[:3].T
    assert_close(U @ U.T, torch.from_numpy(Vk @ Vk.T), name="projector onto top-3 subspace")
    assert_close(U.T @ U, torch.eye(3, dtype=DT), name="U^T U")


def test_linear_autoencoder_spans_principal_subspace():
    X = _pca_data(5)
    k = 3
    W_enc, W_dec = ps.train_linear_autoencoder(X, k, torch.Generator().manual_seed(0))
    assert W_enc.shape == (8, k) and W_dec.shape == (k, 8), f"shapes {W_enc.shape}, {W_dec.shape}"
    Vk = PCA(n_components=k).fit(X.numpy()).components_.T
    angles = scipy.linalg.subspace_angles(W_dec.T.numpy(), Vk)
    assert_close(angles, np.zeros(k), name="principal angles (decoder rows)", atol=1e-5)
    Xc = X - X.mean(0)
    err = ((Xc - Xc @ W_enc @ W_dec) ** 2).sum() / X.shape[0]
    discarded = np.linalg.eigvalsh(np.cov(X.numpy().T, bias=True))[: 8 - k].sum()
    assert_close(err, discarded, name="reconstruction error", rtol=1e-7)


# ---------------------------------------------------------------- ex5
@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1), (3, 2)])
def test_conv2d_matches_functional(stride, padding):
    g = torch.Generator().manual_seed(stride)
    x = torch.randn(2, 3, 9, 11, generator=g, dtype=DT)
    w = torch.randn(4, 3, 3, 2, generator=g, dtype=DT)
    b = torch.randn(4, generator=g, dtype=DT)
    assert_close(ps.conv2d(x, w, b, stride, padding), F.conv2d(x, w, b, stride, padding), name="conv2d")


def test_residual_block_matches_nn_modules_and_zero_branch_is_identity():
    torch.manual_seed(0)
    d, H = 5, 7
    lin1, lin2 = torch.nn.Linear(d, H).double(), torch.nn.Linear(H, d).double()
    x = torch.randn(6, d, dtype=DT)
    with torch.no_grad():
        ref = x + lin2(torch.relu(lin1(x)))
        out = ps.residual_block(x, lin1.weight.T, lin1.bias, lin2.weight.T, lin2.bias)
        assert_close(out, ref, name="residual block")
        zero = ps.residual_block(x, lin1.weight.T, lin1.bias, torch.zeros(H, d, dtype=DT), torch.zeros(d, dtype=DT))
    assert_close(zero, x, name="zero-branch block")


# ---------------------------------------------------------------- ex6
@pytest.mark.parametrize("masked", [False, True])
def test_attention_matches_functional(masked):
    g = torch.Generator().manual_seed(6)
    q = torch.randn(2, 3, 5, 4, generator=g, dtype=DT)
    k = torch.randn(2, 3, 7, 4, generator=g, dtype=DT)
    v = torch.randn(2, 3, 7, 6, generator=g, dtype=DT)
    mask = torch.rand(5, 7, generator=g) < 0.5 if masked else None
    if masked:
        mask[:, 0] = True
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert_close(ps.scaled_dot_product_attention(q, k, v, mask), ref, name="attention")


def test_positional_encoding_closed_form():
    L, d = 11, 6
    ref = np.zeros((L, d))
    for pos in range(L):
        for j in range(d):
            ref[pos, j] = (np.sin if j % 2 == 0 else np.cos)(pos / 10000 ** ((j - j % 2) / d))
    assert_close(ps.sinusoidal_positional_encoding(L, d), ref, name="PE")


# ---------------------------------------------------------------- ex7
@pytest.mark.parametrize("r", [1, 2, 3])
def test_pixel_shuffle_matches_nn_pixelshuffle(r):
    x = torch.randn(2, 2 * r * r, 4, 5, generator=torch.Generator().manual_seed(r), dtype=DT)
    assert_close(ps.pixel_shuffle(x, r), torch.nn.PixelShuffle(r)(x), name="pixel_shuffle")


def test_psnr_closed_form():
    x = torch.rand(3, 2, 4, 4, generator=torch.Generator().manual_seed(7), dtype=DT)
    delta = torch.tensor([0.1, 0.01, 0.5], dtype=DT)
    y = x + delta[:, None, None, None] * torch.where(torch.rand(x.shape) < 0.5, 1.0, -1.0).double()
    # MSE of image n is delta_n^2, so PSNR = -20 log10(delta_n) for max 1 and 20 log10(255 / delta_n) for max 255
    assert_close(ps.psnr(x, y), -20 * np.log10(delta.numpy()), name="psnr")
    assert_close(ps.psnr(255 * x, 255 * y, 255.0), -20 * np.log10(delta.numpy()), name="psnr, max 255")


def test_interpolation_error_bound_is_attained_by_quadratics_and_holds_for_smooth_functions():
    rng = np.random.default_rng(5)
    for _ in range(4):
        t = np.sort(rng.uniform(-3, 3, 7))
        x = np.union1d(np.linspace(t[0], t[-1], 40001), (t[:-1] + t[1:]) / 2)
        a2 = rng.normal()
        g = lambda z: a2 * z**2 + 0.7 * z  # noqa: E731
        brute = np.abs(g(x) - np.interp(x, t, g(t))).max()
        assert_close(ps.interpolation_error_bound(t, 2 * abs(a2)), brute, rtol=1e-9, name="bound vs brute force")
        h = lambda z: np.cos(2 * z)  # noqa: E731  |h''| <= 4
        assert np.abs(h(x) - np.interp(x, t, h(t))).max() <= ps.interpolation_error_bound(t, 4.0)


# ---------------------------------------------------------------- ex4 (continued): Kramer's nonlinear PCA
def _arc(N, alpha, noise, seed):
    g = torch.Generator().manual_seed(seed)
    t = (2 * torch.rand(N, generator=g, dtype=DT) - 1) * alpha
    return torch.stack([torch.cos(t), torch.sin(t)], 1) + noise * torch.randn(N, 2, generator=g, dtype=DT)


@pytest.mark.parametrize("alpha", [0.2, 0.8, 1.3, 2.0, np.pi])
def test_arc_pca_error_matches_quadrature_and_sklearn(alpha):
    E = lambda f: scipy.integrate.quad(f, -alpha, alpha, epsabs=1e-13, epsrel=1e-12)[0] / (2 * alpha)  # noqa: E731
    m = np.array([E(np.cos), E(np.sin)])
    cs = E(lambda t: np.cos(t) * np.sin(t))
    S = np.array([[E(lambda t: np.cos(t) ** 2), cs], [cs, E(lambda t: np.sin(t) ** 2)]]) - np.outer(m, m)
    assert_close(ps.arc_pca_error(alpha), np.linalg.eigvalsh(S)[0], rtol=1e-7, atol=1e-13, name="arc PCA error")
    X = _arc(100000, alpha, 0.0, 1).numpy()
    pca = PCA(n_components=1).fit(X)
    resid = ((X - pca.inverse_transform(pca.transform(X))) ** 2).sum(1).mean()
    assert_close(ps.arc_pca_error(alpha), resid, rtol=0.03, atol=1e-6, name="arc PCA error vs sklearn on samples")


def _kramer_module(params):
    """The same network built from torch.nn layers with the given weights."""
    W_map, b_map, W_bot, b_bot, W_demap, b_demap, W_out, b_out = params
    layers = []
    for W, b in [(W_map, b_map), (W_bot, b_bot), (W_demap, b_demap), (W_out, b_out)]:
        lin = torch.nn.Linear(*W.shape).double()
        with torch.no_grad():
            lin.weight.copy_(W.T)
            lin.bias.copy_(b)
        layers.append(lin)
    enc = torch.nn.Sequential(layers[0], torch.nn.Tanh(), layers[1])
    dec = torch.nn.Sequential(layers[2], torch.nn.Tanh(), layers[3])
    return enc, dec


def _kramer_init(D, M, k, seed):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=DT) / s[0] ** 0.5  # noqa: E731
    z = lambda n: 0.1 * torch.randn(n, generator=g, dtype=DT)  # noqa: E731
    return [r(D, M), z(M), r(M, k), z(k), r(k, M), z(M), r(M, D), z(D)]


def test_autoassociative_forward_matches_nn_sequential():
    p = _kramer_init(3, 6, 2, 0)
    X = torch.randn(9, 3, generator=torch.Generator().manual_seed(1), dtype=DT)
    enc, dec = _kramer_module(p)
    codes, X_hat = ps.autoassociative_forward(X, p)
    with torch.no_grad():
        assert_close(codes, enc(X), name="codes")
        assert_close(X_hat, dec(enc(X)), name="reconstruction")


def test_train_autoassociative_matches_nn_adam_and_beats_pca():
    X = _arc(200, 2.0, 0.03, 3)
    p = _kramer_init(2, 8, 1, 4)
    p_copy = [q.clone() for q in p]
    trained = ps.train_autoassociative(X, p, steps=7, lr=0.05)
    for q, q0 in zip(p, p_copy):
        assert torch.equal(q, q0), "initial weights modified"
    enc, dec = _kramer_module(p_copy)
    opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=0.05)
    for _ in range(7):
        opt.zero_grad()
        (((dec(enc(X)) - X) ** 2).sum(1).mean()).backward()
        opt.step()
    assert_close(trained[0], enc[0].weight.detach().T, name="W_map after 7 Adam steps")
    assert_close(trained[7], dec[2].bias.detach(), name="b_out after 7 Adam steps")
    # Kramer's point: a 1-unit bottleneck fits the arc much better than the best line
    trained = ps.train_autoassociative(X, p, steps=150, lr=0.05)
    err = float(((ps.autoassociative_forward(X, trained)[1] - X) ** 2).sum(1).mean())
    pca = PCA(n_components=1).fit(X.numpy())
    err_pca = ((X.numpy() - pca.inverse_transform(pca.transform(X.numpy()))) ** 2).sum(1).mean()
    assert err < 0.2 * err_pca, f"nonlinear AE error {err:.4g} vs PCA {err_pca:.4g}"


# ---------------------------------------------------------------- ex5 (continued): plain vs residual networks
def _deep_init(D, w, depth, C, residual, seed, jitter=0.0):
    g = torch.Generator().manual_seed(seed)
    p = [torch.randn(D, w, generator=g, dtype=DT) / D**0.5, jitter * torch.randn(w, generator=g, dtype=DT)]
    for _ in range(depth):
        W2 = torch.randn(w, w, generator=g, dtype=DT) / w**0.5
        p += [torch.randn(w, w, generator=g, dtype=DT) * (2 / w) ** 0.5, jitter * torch.randn(w, generator=g, dtype=DT),
              (0.0 if residual else 1.0) * W2 + jitter * torch.randn(w, w, generator=g, dtype=DT),
              jitter * torch.randn(w, generator=g, dtype=DT)]
    return p + [torch.randn(w, C, generator=g, dtype=DT) / w**0.5, jitter * torch.randn(C, generator=g, dtype=DT)]


class _Net(torch.nn.Module):
    def __init__(self, params, residual):
        super().__init__()
        self.residual = residual
        lins = []
        for W, b in zip(params[0::2], params[1::2]):
            lin = torch.nn.Linear(*W.shape).double()
            with torch.no_grad():
                lin.weight.copy_(W.T)
                lin.bias.copy_(b)
            lins.append(lin)
        self.lins = torch.nn.ModuleList(lins)

    def forward(self, x):
        h = self.lins[0](x)
        for j in range((len(self.lins) - 2) // 2):
            f = self.lins[2 + 2 * j](torch.relu(self.lins[1 + 2 * j](h)))
            h = h + f if self.residual else f
        return self.lins[-1](h)


@pytest.mark.parametrize("residual", [False, True])
def test_deep_net_forward_matches_nn_modules(residual):
    p = _deep_init(4, 6, 5, 2, residual, 0, jitter=0.1)
    X = torch.randn(7, 4, generator=torch.Generator().manual_seed(2), dtype=DT)
    with torch.no_grad():
        assert_close(ps.deep_net_forward(X, p, residual), _Net(p, residual)(X), name="deep net output")


def test_zero_initialised_residual_blocks_are_identities():
    p = _deep_init(4, 6, 9, 2, True, 1)
    X = torch.randn(7, 4, generator=torch.Generator().manual_seed(3), dtype=DT)
    assert_close(ps.deep_net_forward(X, p, True), X @ p[0] @ p[-2], name="residual net at init (biases 0)")


def test_train_deep_net_matches_nn_adam():
    X = torch.randn(30, 4, generator=torch.Generator().manual_seed(4), dtype=DT)
    Y = torch.sin(X[:, :1])
    p = _deep_init(4, 5, 3, 1, False, 5, jitter=0.05)
    p_copy = [q.clone() for q in p]
    losses = ps.train_deep_net(X, Y, p, False, 6, 0.01)
    for q, q0 in zip(p, p_copy):
        assert torch.equal(q, q0), "initial weights modified"
    net = _Net(p_copy, False)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    ref = []
    for _ in range(6):
        opt.zero_grad()
        loss = F.mse_loss(net(X), Y)
        loss.backward()
        opt.step()
        ref.append(loss.item())
    with torch.no_grad():
        ref.append(F.mse_loss(net(X), Y).item())
    assert_close(losses, torch.tensor(ref, dtype=DT), name="training losses")
    assert ps.train_deep_net(X, Y, p, True, 0, 0.01).shape == (1,)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_degradation_residual_trains_better_at_depth_24(seed):
    g = torch.Generator().manual_seed(100 + seed)
    X = torch.randn(64, 8, generator=g, dtype=DT)
    w = torch.randn(8, 1, generator=g, dtype=DT)
    Y = torch.sin(2 * X @ w / 8**0.5) + 0.5 * torch.cos(X[:, :1] * X[:, 1:2])
    final = {r: float(ps.train_deep_net(X, Y, _deep_init(8, 16, 24, 1, r, seed), r, 80, 3e-3)[-1]) for r in (False, True)}
    assert final[True] < 0.5 * final[False], final


# ---------------------------------------------------------------- ex6 (continued): the shift matrix of the encoding
@pytest.mark.parametrize("k,d", [(1, 4), (3, 16), (-7, 8), (0, 6), (25, 64)])
def test_pe_shift_matrix_equals_least_squares_fit_of_the_shift(k, d):
    # encodings at positions spread over [0, 1e6], so that every frequency is well sampled and the fit is well posed
    pos = np.random.default_rng(d).integers(0, 10**6, 20 * d).astype(np.float64)
    omega = 10000.0 ** (-np.arange(0, d, 2) / d)

    def pe(t):
        out = np.zeros((len(t), d))
        out[:, 0::2], out[:, 1::2] = np.sin(np.outer(t, omega)), np.cos(np.outer(t, omega))
        return out

    T_ls = np.linalg.lstsq(pe(pos), pe(pos + k), rcond=None)[0].T  # the linear map PE[pos] -> PE[pos + k], fitted
    T = ps.pe_shift_matrix(k, d)
    assert_close(T, T_ls, name="T vs least-squares fit", atol=1e-8, rtol=1e-8)
    P = ps.sinusoidal_positional_encoding(3 * d + abs(k), d)
    src, dst = (P[:len(P) - k], P[k:]) if k >= 0 else (P[-k:], P[:len(P) + k])
    assert_close(src @ T.T, dst, name="T PE[pos] = PE[pos + k] on the first positions")
    assert_close(T.T @ T, torch.eye(d, dtype=DT), name="T orthogonal")


# ---------------------------------------------------------------- ex7 (continued): expected PSNR of Gaussian noise
@pytest.mark.parametrize("sigma,n,max_val", [(0.1, 1, 1.0), (0.1, 4, 1.0), (5.0, 48, 255.0), (0.01, 2000, 1.0)])
def test_expected_psnr_matches_chi2_quadrature(sigma, n, max_val):
    d = scipy.stats.chi2(n)
    ub = d.ppf(1 - 1e-15) if n > 1 else np.inf
    ref = d.expect(lambda u: 10 * np.log10(max_val**2 * n / (sigma**2 * u)), lb=0, ub=ub)
    assert_close(ps.expected_psnr_gaussian(sigma, n, max_val), ref, rtol=1e-9, atol=1e-9, name="expected PSNR")


def test_expected_psnr_matches_monte_carlo_and_exceeds_psnr_of_mean_mse():
    g = torch.Generator().manual_seed(9)
    x = torch.rand(50000, 1, 2, 2, generator=g, dtype=DT)
    y = x + 0.05 * torch.randn(x.shape, generator=g, dtype=DT)
    draws = ps.psnr(y, x)
    se = float(draws.std()) / len(draws) ** 0.5
    value = ps.expected_psnr_gaussian(0.05, 4, 1.0)
    assert abs(value - float(draws.mean())) < 5 * se, (value, float(draws.mean()), se)
    assert value > 10 * np.log10(1 / 0.05**2) + 1.0  # Jensen: the gap is about 1.17 dB for n = 4
