"""Unit tests of solutions.ps09_dynamical_systems against independent oracles.

Oracles: torchdiffeq's fixed-grid Euler solver and scipy.integrate.solve_ivp (ResNet = Euler, transport by
characteristics), Richardson extrapolation of matrix powers with scipy.linalg.expm (Euler error constant),
torch.autograd (costates, stationarity of the augmented Hamiltonian, Jacobian determinants),
scipy.optimize.minimize (maximiser of the augmented Hamiltonian), brute-force enumeration (binary Hamiltonian
maximisation), a serial fine solve and perturbation columns (parareal), numpy.linalg.eigvals (antisymmetric
layers), sympy series expansions (LM residual), a scipy.sparse upwind matrix (upwind scheme).
"""

import itertools
import math

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import scipy.sparse
import sympy
import torch
from scipy.integrate import solve_ivp
from torchdiffeq import odeint

from coursekit.checks import assert_close, assert_true
from solutions import ps09_dynamical_systems as sol

DT = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny problems: one thread is faster (restored afterwards for other test modules)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- exercise 1
@pytest.mark.parametrize("L,T", [(1, 0.5), (7, 2.0), (40, 1.3)])
def test_resnet_forward_is_torchdiffeq_euler(L, T):
    g = _gen(L)
    W = torch.randn(3, 3, generator=g, dtype=DT)
    x = torch.randn(4, 3, generator=g, dtype=DT)
    x_copy = x.clone()

    def f(t, z):
        return torch.tanh(z @ W.T) * (1 + float(t)) - 0.3 * z

    got = sol.resnet_forward(x, f, L, T)
    ref = odeint(f, x, torch.linspace(0, T, L + 1, dtype=DT), method="euler")
    assert_close(got, ref, name="resnet_forward vs torchdiffeq euler")
    assert_close(x, x_copy, name="input unchanged")


def test_resnet_forward_depth_zero():
    x = torch.randn(2, 2, generator=_gen(1), dtype=DT)
    got = sol.resnet_forward(x, lambda t, z: z, 0, 1.0)
    assert_true(got.shape == (1, 2, 2), f"shape {tuple(got.shape)}")
    assert_close(got[0], x, name="depth 0")


def test_resnet_forward_first_order_vs_solve_ivp():
    x = torch.tensor([[0.4, -0.9]], dtype=DT)
    ref = solve_ivp(lambda t, z: np.cos(t) * np.sin(z[::-1]) - z, (0, 1.5), x[0].numpy(), rtol=1e-12, atol=1e-12).y[:, -1]

    def f(t, z):
        return math.cos(t) * torch.sin(torch.flip(z, dims=[1])) - z

    errs = [np.linalg.norm(sol.resnet_forward(x, f, L, 1.5)[-1, 0].numpy() - ref) for L in (50, 100, 200, 400)]
    slope = np.polyfit(np.log([50, 100, 200, 400]), np.log(errs), 1)[0]
    assert_true(abs(slope + 1) < 0.05, f"slope {slope}")


@pytest.mark.parametrize("seed,D,T", [(0, 2, 1.0), (1, 3, 2.5), (2, 4, 0.4)])
def test_euler_error_limit_vs_richardson(seed, D, T):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((D, D)) * 0.7
    x = rng.standard_normal(D)
    E = scipy.linalg.expm(T * A) @ x

    def scaled(L):
        return L * (np.linalg.matrix_power(np.eye(D) + T / L * A, L) @ x - E)

    L = 40000
    lim = 2 * scaled(2 * L) - scaled(L)
    got = sol.euler_error_limit(torch.tensor(A), torch.tensor(x), T)
    assert_close(got, lim, rtol=1e-5, atol=1e-6, name="Euler error constant")


# ---------------------------------------------------------------- exercise 2
def _problem(seed, N=6, D=3, T=4):
    g = _gen(seed)
    return (torch.randn(N, D, generator=g, dtype=DT), torch.randn(N, D, generator=g, dtype=DT),
            0.5 * torch.randn(T, D, D, generator=g, dtype=DT))


def _loss(x0, y, thetas, h, lam):
    x = x0.numpy()
    for t in range(len(thetas)):
        x = x + h * np.tanh(x) @ thetas[t].numpy().T
    return ((x - y.numpy()) ** 2).sum() / (2 * len(y)) + lam / 2 * (thetas.numpy() ** 2).sum()


def test_control_forward_numpy_loop():
    x0, _, th = _problem(0)
    xs = sol.control_forward(x0, th, 0.3)
    x = x0.numpy()
    for t in range(4):
        x = x + 0.3 * np.tanh(x) @ th[t].numpy().T
        assert_close(xs[t + 1], x, name=f"x_{t + 1}")


@pytest.mark.parametrize("seed,h", [(1, 0.2), (2, 1.0)])
def test_costates_are_negative_autograd_gradients(seed, h):
    x0, y, th = _problem(seed)
    xs = [x0.clone().requires_grad_(True)]
    for t in range(len(th)):
        xs.append(xs[-1] + h * torch.tanh(xs[-1]) @ th[t].T)
    phi = ((xs[-1] - y) ** 2).sum() / (2 * len(y))
    grads = torch.autograd.grad(phi, xs)
    p = sol.costates(torch.stack(xs).detach(), th, y, h)
    assert_close(p, -torch.stack(grads), name="costates")


def test_costates_give_parameter_gradient():
    """dJ/dtheta_t = -grad_theta H_t(x_t, p_{t+1}, theta_t): the PMP gradient equals back-propagation."""
    x0, y, th = _problem(3)
    h, lam = 0.25, 0.1
    thr = th.clone().requires_grad_(True)
    x = x0
    for t in range(len(th)):
        x = x + h * torch.tanh(x) @ thr[t].T
    J = ((x - y) ** 2).sum() / (2 * len(y)) + lam / 2 * (thr**2).sum()
    (gJ,) = torch.autograd.grad(J, thr)
    xs = sol.control_forward(x0, th, h)
    p = sol.costates(xs, th, y, h)
    for t in range(len(th)):
        grad_H = h * p[t + 1].T @ torch.tanh(xs[t]) - lam * th[t]
        assert_close(gJ[t], -grad_H, name=f"dJ/dtheta_{t}")


@pytest.mark.parametrize("seed,N,D", [(4, 5, 2), (5, 3, 3), (6, 1, 3)])
def test_binary_argmax_brute_force(seed, N, D):
    g = _gen(seed)
    x = 2 * torch.randn(N, D, generator=g, dtype=DT)
    p = torch.randn(N, D, generator=g, dtype=DT)

    def H(theta):
        return float((p * (x + 0.4 * torch.tanh(x) @ theta.T)).sum())

    best = max(H(torch.tensor(s, dtype=DT).reshape(D, D)) for s in itertools.product([-1.0, 1.0], repeat=D * D))
    th = sol.hamiltonian_argmax_binary(x, p, 0.4)
    assert_true(bool(((th == 1) | (th == -1)).all()), "not binary")
    assert_true(H(th) >= best - 1e-12, f"{H(th)} < {best}")


def _aug_H(theta, t, xs, ps, h, lam, rho):
    s, q = torch.tanh(xs[t]), ps[t + 1]
    H = (q * (xs[t] + h * s @ theta.T)).sum() - lam / 2 * (theta**2).sum()
    gx = q + h * (1 - s**2) * (q @ theta)
    return H - rho / 2 * ((xs[t + 1] - xs[t] - h * s @ theta.T) ** 2).sum() - rho / 2 * ((ps[t] - gx) ** 2).sum()


@pytest.mark.parametrize("rho", [0.0, 0.7, 5.0])
def test_emsa_step_maximises_augmented_hamiltonian(rho):
    x0, y, th = _problem(7)
    h, lam = 0.3, 0.05
    new = sol.emsa_step(x0, y, th, h, lam, rho)
    xs = sol.control_forward(x0, th, h)
    ps = sol.costates(xs, th, y, h)
    for t in range(len(th)):
        def neg(v, t=t):
            return -float(_aug_H(torch.tensor(v, dtype=DT).reshape(3, 3), t, xs, ps, h, lam, rho))
        res = scipy.optimize.minimize(neg, np.zeros(9), method="BFGS", options={"gtol": 1e-11})
        assert_close(new[t].reshape(-1), res.x, rtol=1e-5, atol=1e-6, name=f"argmax of H~_{t} (BFGS)")
        th_t = new[t].clone().requires_grad_(True)
        (gr,) = torch.autograd.grad(_aug_H(th_t, t, xs, ps, h, lam, rho), th_t)
        assert_close(gr, torch.zeros(3, 3, dtype=DT), atol=1e-10, name="stationarity")


def test_emsa_monotone_with_rho_and_oscillating_without():
    g = _gen(0)
    x0 = torch.randn(8, 2, generator=g, dtype=DT)
    y = torch.randn(8, 2, generator=g, dtype=DT)
    th0 = 0.3 * torch.randn(5, 2, 2, generator=g, dtype=DT)
    its = sol.emsa(x0, y, th0, 0.2, 0.05, 1.0, 20)
    J = [_loss(x0, y, th, 0.2, 0.05) for th in its]
    assert_true(all(b <= a + 1e-12 for a, b in zip(J, J[1:])), f"not monotone: {J}")
    its0 = sol.emsa(x0, y, th0, 0.2, 0.05, 0.0, 20)
    J0 = [_loss(x0, y, th, 0.2, 0.05) for th in its0]
    assert_true(sum(b > a for a, b in zip(J0, J0[1:])) >= 5, "basic MSA expected to oscillate on this problem")
    assert_true(J[-1] < min(J0), "E-MSA ends below every basic-MSA iterate")


# ---------------------------------------------------------------- exercise 3
def _euler(n, z, steps, dT):
    h = dT / steps
    for i in range(steps):
        z = z + h * (-(z**3) + math.sin(2 * (n * dT + i * h)) * torch.flip(z, dims=[0]))
    return z


@pytest.mark.parametrize("N", [1, 4, 7])
def test_parareal_exact_after_k_iterations(N):
    x0 = torch.tensor([1.0, -0.3], dtype=DT)
    fine = lambda n, z: _euler(n, z, 15, 0.3)  # noqa: E731
    coarse = lambda n, z: _euler(n, z, 1, 0.3)  # noqa: E731
    serial = [x0]
    for n in range(N):
        serial.append(fine(n, serial[-1]))
    serial = torch.stack(serial)
    U = sol.parareal(fine, coarse, x0, N, N)
    assert_true(U.shape == (N + 1, N + 1, 2), f"shape {tuple(U.shape)}")
    for k in range(N + 1):
        assert_close(U[k, : k + 1], serial[: k + 1], rtol=1e-12, atol=1e-14, name=f"U^{k}")


def test_parareal_matches_gander_vandewalle_formula():
    """Scalar linear case: e^k = E^k e^0 with E from the perturbation definition (numpy recursion)."""
    a, b, N = 0.6, 0.9, 6
    U = sol.parareal(lambda n, x: a * x, lambda n, x: b * x, torch.ones(1, dtype=DT), N, 4)[:, :, 0].numpy()
    exact = a ** np.arange(N + 1)
    E = np.zeros((N, N))
    for j in range(N):
        V = exact.copy()
        V[j + 1] += 1
        new = [1.0]
        for n in range(N):
            new.append(b * new[n] + a * V[n] - b * V[n])
        E[:, j] = (np.array(new) - exact)[1:]
    e0 = U[0, 1:] - exact[1:]
    for k in range(5):
        assert_close(U[k, 1:] - exact[1:], np.linalg.matrix_power(E, k) @ e0, atol=1e-14, name=f"e^{k}")
    assert_close(sol.parareal_error_matrix(a, b, N), E, atol=1e-15, name="E")


@pytest.mark.parametrize("a,b,N", [(0.3, -0.8, 5), (1.5, 0.2, 3), (0.9, 0.9, 4)])
def test_parareal_error_matrix_properties(a, b, N):
    E = sol.parareal_error_matrix(a, b, N).numpy()
    assert_close(np.linalg.matrix_power(E, N), np.zeros((N, N)), atol=1e-13, name="nilpotent")
    assert_close(np.abs(E).sum(1).max(), abs(a - b) * sum(abs(b) ** m for m in range(N - 1)), name="inf norm")


# ---------------------------------------------------------------- exercise 4
@pytest.mark.parametrize("D,gamma", [(2, 1.0), (5, 0.4), (3, 0.0)])
def test_antisym_interval_eigvals(D, gamma):
    rng = np.random.default_rng(D)
    d = rng.uniform(0.1, 1.0, D)
    lo, hi = sol.antisym_real_part_interval(gamma, torch.tensor(d)).tolist()
    for _ in range(200):
        W = rng.standard_normal((D, D)) * rng.uniform(0.1, 10)
        re = np.linalg.eigvals(np.diag(d) @ (W - W.T - gamma * np.eye(D))).real
        assert_true(re.min() >= lo - 1e-9 and re.max() <= hi + 1e-9, f"{re} not in [{lo}, {hi}]")
    re = np.linalg.eigvals(np.diag(d) @ (-gamma * np.eye(D))).real
    assert_close([lo, hi], [re.min(), re.max()], name="ends attained (W symmetric)")


def test_verlet_inverse_roundtrip_and_unit_determinant():
    g = _gen(9)
    L, D = 50, 2
    Ks = torch.randn(L, D, D, generator=g, dtype=DT)
    bs = torch.randn(L, D, generator=g, dtype=DT)
    y = torch.randn(3, D, generator=g, dtype=DT)
    z = torch.randn(3, D, generator=g, dtype=DT)
    yL, zL = sol.verlet_forward(y, z, Ks, bs, 0.2)
    y0, z0 = sol.verlet_inverse(yL, zL, Ks, bs, 0.2)
    assert_close(y0, y, rtol=1e-11, atol=1e-12, name="y0")
    assert_close(z0, z, rtol=1e-11, atol=1e-12, name="z0")

    def flat(u):
        a, b = sol.verlet_forward(u[:D][None], u[D:][None], Ks, bs, 0.2)
        return torch.cat([a[0], b[0]])

    J = torch.autograd.functional.jacobian(flat, torch.cat([y[0], z[0]]))
    assert_close(torch.linalg.det(J), 1.0, rtol=1e-10, atol=1e-10, name="det J")


def test_verlet_forward_numpy_loop():
    g = _gen(10)
    Ks = torch.randn(4, 3, 3, generator=g, dtype=DT)
    bs = torch.randn(4, 3, generator=g, dtype=DT)
    y = torch.randn(2, 3, generator=g, dtype=DT)
    z = torch.randn(2, 3, generator=g, dtype=DT)
    yn, zn = y.numpy().copy(), z.numpy().copy()
    for j in range(4):
        K, b = Ks[j].numpy(), bs[j].numpy()
        for n in range(2):
            yn[n] = yn[n] + 0.3 * np.tanh(K @ zn[n] + b)
            zn[n] = zn[n] - 0.3 * np.tanh(K.T @ yn[n] + b)
    yL, zL = sol.verlet_forward(y, z, Ks, bs, 0.3)
    assert_close(yL, yn, name="y_L")
    assert_close(zL, zn, name="z_L")


# ---------------------------------------------------------------- exercise 5
@pytest.mark.parametrize("k,c", [(0.0, 1.0), (0.5, 1.5), (1.0, 2.0), (-0.3, 0.9)])
def test_lm_residual_coefficients_sympy(k, c):
    """Residual of the scheme on the generic cubic u(t) = sum_j a_j t^j / j! (u^(j)(0) = a_j), expanded by sympy."""
    t, h = sympy.symbols("t h")
    a = sympy.symbols("a0:4")
    u = sum(a[j] * t**j / sympy.factorial(j) for j in range(4))
    kk, cc = sympy.nsimplify(k), sympy.nsimplify(c)
    res = sympy.expand(u.subs(t, h) - (1 - kk) * u.subs(t, 0) - kk * u.subs(t, -h) - cc * h * u.diff(t).subs(t, 0))
    coeffs = [float(res.coeff(h, j).coeff(a[j])) for j in range(4)]
    assert_close(sol.lm_residual_coefficients(k, c), coeffs, name=f"C for k={k}, c={c}")


def test_lm_resnet_forward_k0_is_resnet():
    g = _gen(11)
    A = 0.3 * torch.randn(2, 2, generator=g, dtype=DT)
    u0 = torch.randn(3, 2, generator=g, dtype=DT)
    u1 = u0 + torch.tanh(u0 @ A.T)
    us = sol.lm_resnet_forward(u0, u1, lambda u: torch.tanh(u @ A.T), 0.0, 5)
    ref = odeint(lambda t, u: torch.tanh(u @ A.T), u0, torch.arange(6, dtype=DT), method="euler")
    assert_close(us, ref, name="LM-ResNet with k = 0 vs Euler (h = 1)")


@pytest.mark.parametrize("k,p", [(1.0, 2.0), (0.0, 1.0), (0.5, 1.0), (-0.5, 1.0)])
def test_lm_convergence_order(k, p):
    assert_true(abs(sol.lm_convergence_order(k) - p) < 0.1, f"k={k}: {sol.lm_convergence_order(k)}")


# ---------------------------------------------------------------- exercise 6
def test_characteristics_vs_solve_ivp_and_torchdiffeq():
    x = torch.linspace(0, 1, 17, dtype=DT)[:-1]
    v = lambda s: 1 + 0.5 * torch.sin(2 * math.pi * s)  # noqa: E731
    u0 = lambda s: torch.exp(torch.cos(2 * math.pi * s))  # noqa: E731
    got = sol.characteristics_solve(u0, v, x, 0.4, 32)
    X = odeint(lambda s, X: -v(X), x, torch.linspace(0, 0.4, 33, dtype=DT), method="euler")[-1]
    assert_close(got, u0(X), name="characteristics vs torchdiffeq euler")
    ref = solve_ivp(lambda s, X: -(1 + 0.5 * np.sin(2 * np.pi * X)), (0, 0.4), x.numpy(), rtol=1e-12, atol=1e-12).y[:, -1]
    errs = [np.abs(sol.characteristics_solve(u0, v, x, 0.4, L).numpy() - np.exp(np.cos(2 * np.pi * ref))).max()
            for L in (100, 200, 400)]
    assert_true(1.85 < errs[0] / errs[1] < 2.15 and 1.9 < errs[1] / errs[2] < 2.1, f"{errs}")


@pytest.mark.parametrize("vel_kind", ["positive", "mixed"])
def test_upwind_vs_sparse_matrix(vel_kind):
    M = 40
    x = np.arange(M) / M
    vel = 1 + 0.5 * np.sin(2 * np.pi * x) if vel_kind == "positive" else np.cos(2 * np.pi * x)
    dx, t, n = 1 / M, 0.3, 30
    nu = t / n / dx * vel
    P = scipy.sparse.diags(np.maximum(nu, 0))
    Mi = scipy.sparse.diags(np.minimum(nu, 0))
    I = scipy.sparse.identity(M)  # noqa: E741
    back = I - scipy.sparse.csr_matrix((np.ones(M), (np.arange(M), (np.arange(M) - 1) % M)), shape=(M, M))
    fwd = scipy.sparse.csr_matrix((np.ones(M), (np.arange(M), (np.arange(M) + 1) % M)), shape=(M, M)) - I
    A = I - P @ back - Mi @ fwd
    u = np.sin(2 * np.pi * x) + 0.3 * np.cos(6 * np.pi * x)
    ref = u.copy()
    for _ in range(n):
        ref = A @ ref
    u_t = torch.tensor(u)
    got = sol.upwind_solve(u_t, torch.tensor(vel), dx, t, n)
    assert_close(got, ref, name="upwind vs sparse matrix power")
    assert_close(u_t, u, name="input unchanged")


def test_upwind_first_order():
    errs = []
    for M in (100, 200, 400):
        x = torch.arange(M, dtype=DT) / M
        vel = 1 + 0.5 * torch.sin(2 * math.pi * x)
        n = int(math.ceil(0.5 * 1.5 / (0.8 / M)))
        ref = solve_ivp(lambda s, X: -(1 + 0.5 * np.sin(2 * np.pi * X)), (0, 0.5), x.numpy(),
                        rtol=1e-12, atol=1e-12).y[:, -1]
        errs.append(np.abs(sol.upwind_solve(torch.sin(2 * math.pi * x), vel, 1 / M, 0.5, n).numpy()
                           - np.sin(2 * np.pi * ref)).max())
    slope = np.polyfit(np.log([100, 200, 400]), np.log(errs), 1)[0]
    assert_true(-1.15 < slope < -0.8, f"slope {slope}")
