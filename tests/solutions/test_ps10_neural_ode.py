"""Unit tests of solutions.ps10_neural_ode against independent oracles: scipy.linalg.expm and
expm_frechet (closed forms of the linear ODE), torchdiffeq (odeint, odeint_adjoint),
torch.autograd through torchdiffeq's solvers, scipy.integrate.solve_ivp with finite differences
of the flow map, scipy.stats.multivariate_normal (Gaussian pushforward), exhaustive enumeration
of Rademacher probes, Monte Carlo, POT's exact OT (ot.emd2), brute force over permutations."""

import itertools
import math

import numpy as np
import ot
import pytest
import torch
from scipy.integrate import solve_ivp
from scipy.linalg import expm, expm_frechet, sqrtm
from scipy.stats import multivariate_normal
from torchdiffeq import odeint, odeint_adjoint

from coursekit.checks import assert_close, assert_true
from solutions import ps10_neural_ode as sol

DT = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # the problems are tiny: one thread avoids contention on a busy machine (restored afterwards)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class LinearField(torch.nn.Module):
    def __init__(self, A):
        super().__init__()
        self.A = torch.nn.Parameter(torch.as_tensor(A, dtype=DT).clone())

    def forward(self, t, z):
        return z @ self.A.T


class TanhField(torch.nn.Module):
    """f(t, z) = tanh(z W^T + t c + b) U^T, time-dependent."""

    def __init__(self, D, H, seed, scale=1.0, time_dependent=True):
        super().__init__()
        g = _gen(seed)
        self.W = torch.nn.Parameter(scale * torch.randn(H, D, generator=g, dtype=DT))
        self.b = torch.nn.Parameter(0.5 * torch.randn(H, generator=g, dtype=DT))
        self.c = torch.nn.Parameter((1.0 if time_dependent else 0.0) * torch.randn(H, generator=g, dtype=DT))
        self.U = torch.nn.Parameter(scale * torch.randn(D, H, generator=g, dtype=DT) / math.sqrt(H))

    def forward(self, t, z):
        return torch.tanh(z @ self.W.T + t * self.c + self.b) @ self.U.T


# ---------------------------------------------------------------- exercise 1
def test_rk4_linear_one_step_is_degree4_taylor_of_expm():
    A = torch.randn(3, 3, generator=_gen(0), dtype=DT)
    z0 = torch.randn(2, 3, generator=_gen(1), dtype=DT)
    h = 0.3
    zs = sol.rk4_solve(LinearField(A), z0, torch.tensor([0.0, h], dtype=DT))
    P = sum(np.linalg.matrix_power(h * A.numpy(), k) / math.factorial(k) for k in range(5))
    assert_close(zs[1], z0.numpy() @ P.T, name="one RK4 step")
    assert_close(zs[0], z0, name="row 0")


def test_rk4_matches_expm_on_fine_grid():
    A = torch.randn(4, 4, generator=_gen(2), dtype=DT) * 0.7
    z0 = torch.randn(3, 4, generator=_gen(3), dtype=DT)
    t = torch.linspace(0.0, 1.5, 301, dtype=DT)
    zs = sol.rk4_solve(LinearField(A), z0, t)
    for k in [0, 100, 300]:
        assert_close(zs[k], z0.numpy() @ expm(float(t[k]) * A.numpy()).T, name=f"z(t_{k})", rtol=1e-9, atol=1e-10)


def test_rk4_matches_torchdiffeq_classical_rk4_is_simpson():
    # f depends only on t: one classical RK4 step is Simpson's rule
    f = lambda t, z: torch.cos(3 * t) * torch.ones_like(z)  # noqa: E731
    t = torch.tensor([0.0, 0.4, 1.0], dtype=DT)
    zs = sol.rk4_solve(f, torch.zeros(1, 2, dtype=DT), t)
    simp = lambda a, b: (b - a) / 6 * (math.cos(3 * a) + 4 * math.cos(3 * (a + b) / 2) + math.cos(3 * b))  # noqa: E731
    assert_close(zs[1, 0, 0], simp(0.0, 0.4), name="Simpson on [0, .4]")
    assert_close(zs[2, 0, 0], simp(0.0, 0.4) + simp(0.4, 1.0), name="Simpson on [0, 1]")


def test_rk4_agrees_with_torchdiffeq_dopri5_nonlinear():
    f = TanhField(3, 8, seed=4)
    z0 = torch.randn(5, 3, generator=_gen(5), dtype=DT)
    t = torch.linspace(0.0, 1.0, 201, dtype=DT)
    with torch.no_grad():
        ours = sol.rk4_solve(f, z0, t)
        ref = odeint(f, z0, t, rtol=1e-12, atol=1e-12, method="dopri5")
    assert_close(ours, ref, name="RK4 vs dopri5", rtol=1e-8, atol=1e-9)


def test_rk4_fourth_order():
    f = TanhField(2, 6, seed=6, scale=2.0)
    z0 = torch.randn(4, 2, generator=_gen(7), dtype=DT)
    with torch.no_grad():
        ref = odeint(f, z0, torch.tensor([0.0, 1.0], dtype=DT), rtol=1e-13, atol=1e-13)[-1]
        e = [float((sol.rk4_solve(f, z0, torch.linspace(0, 1, n + 1, dtype=DT))[-1] - ref).abs().max())
             for n in (20, 40)]
    assert_true(12 < e[0] / e[1] < 20, f"error ratio {e[0] / e[1]:.2f} when halving h (expected ~16)")


def test_adjoint_linear_closed_forms():
    g = _gen(8)
    A = torch.randn(3, 3, generator=g, dtype=DT) * 0.6
    z0 = torch.randn(4, 3, generator=g, dtype=DT)
    C = torch.randn(4, 3, generator=g, dtype=DT)  # L = sum(C * z(T))
    T = 1.3
    f = LinearField(A)
    z1 = torch.as_tensor(z0.numpy() @ expm(T * A.numpy()).T)
    dz0, (dA,) = sol.adjoint_gradients(f, z1, C, 0.0, T, 60)
    assert_close(dz0, C.numpy() @ expm(T * A.numpy()), name="dL/dz0 = exp(A^T T) c", rtol=1e-8, atol=1e-10)
    G = sum(T * expm_frechet(T * A.numpy().T, np.outer(C[i].numpy(), z0[i].numpy()), compute_expm=False)
            for i in range(4))
    assert_close(dA, G, name="dL/dA = T expm_frechet(A^T T, c z0^T)", rtol=1e-7, atol=1e-9)


def test_expm_frechet_identity_against_finite_differences():
    # the oracle of the previous test, checked on its own
    rng = np.random.default_rng(0)
    A, c, z0, T = rng.normal(size=(3, 3)), rng.normal(size=3), rng.normal(size=3), 0.8
    G = T * expm_frechet(T * A.T, np.outer(c, z0), compute_expm=False)
    fd = np.zeros((3, 3))
    for i, j in itertools.product(range(3), range(3)):
        E = np.zeros((3, 3))
        E[i, j] = 1e-6
        fd[i, j] = (c @ expm(T * (A + E)) @ z0 - c @ expm(T * (A - E)) @ z0) / 2e-6
    assert_close(G, fd, name="finite differences", rtol=1e-6, atol=1e-8)


def test_adjoint_matches_torchdiffeq_odeint_adjoint_and_backprop():
    f = TanhField(3, 7, seed=9)
    g = _gen(10)
    z0 = torch.randn(6, 3, generator=g, dtype=DT)
    C = torch.randn(6, 3, generator=g, dtype=DT)
    t = torch.tensor([0.2, 1.4], dtype=DT)
    z0r = z0.clone().requires_grad_(True)
    z1 = odeint_adjoint(f, z0r, t, rtol=1e-11, atol=1e-11, adjoint_params=tuple(f.parameters()))[-1]
    ref = torch.autograd.grad((C * z1).sum(), [z0r, *f.parameters()])
    dz0, dps = sol.adjoint_gradients(f, z1.detach(), C, 0.2, 1.4, 100)
    assert_close(dz0, ref[0], name="dL/dz0 vs odeint_adjoint", rtol=1e-7, atol=1e-9)
    for p, a, b in zip(["W", "b", "c", "U"], dps, ref[1:]):
        assert_close(a, b, name=f"dL/d{p} vs odeint_adjoint", rtol=1e-7, atol=1e-9)
    # backprop through the same RK4 solver agrees up to solver error only
    z0r = z0.clone().requires_grad_(True)
    z1b = sol.rk4_solve(f, z0r, torch.linspace(0.2, 1.4, 11, dtype=DT))[-1]
    bp = torch.autograd.grad((C * z1b).sum(), [z0r, *f.parameters()])
    dz0c, dpsc = sol.adjoint_gradients(f, z1b.detach(), C, 0.2, 1.4, 10)
    diff = max(float((x - y).abs().max()) for x, y in zip([dz0c, *dpsc], bp))
    assert_true(1e-12 < diff < 1e-4, f"adjoint vs backprop-through-solver differ by {diff:.2e} (solver error)")


# ---------------------------------------------------------------- exercise 2
def test_cnf_linear_gaussian_pushforward():
    g = _gen(11)
    A = torch.randn(2, 2, generator=g, dtype=DT) * 0.8
    z0 = torch.randn(50, 2, generator=g, dtype=DT)
    logp0 = torch.as_tensor(multivariate_normal(np.zeros(2), np.eye(2)).logpdf(z0.numpy()))
    z1, lp1 = sol.cnf_forward(LinearField(A), z0, logp0, 0.0, 1.0, 50)
    M = expm(A.numpy())
    assert_close(z1, z0.numpy() @ M.T, name="z1", rtol=1e-9, atol=1e-10)
    ref = multivariate_normal(np.zeros(2), M @ M.T).logpdf(z1.numpy())
    assert_close(lp1, ref, name="log p1 vs Gaussian pushforward", rtol=1e-9, atol=1e-9)


def test_cnf_nonlinear_vs_flow_map_jacobian():
    f = TanhField(2, 6, seed=12, scale=1.5)
    z0 = torch.randn(5, 2, generator=_gen(13), dtype=DT)
    logp0 = -0.5 * (z0**2).sum(1) - math.log(2 * math.pi)
    z1, lp1 = sol.cnf_forward(f, z0, logp0, 0.0, 1.0, 100)

    def flow(x):
        rhs = lambda t, y: f(torch.tensor(t, dtype=DT), torch.as_tensor(y)[None]).detach().numpy()[0]  # noqa: E731
        return solve_ivp(rhs, (0, 1), x, rtol=1e-12, atol=1e-12, method="DOP853").y[:, -1]

    for i in range(5):
        x = z0[i].numpy()
        Jm = np.stack([(flow(x + 1e-5 * e) - flow(x - 1e-5 * e)) / 2e-5 for e in np.eye(2)], axis=1)
        assert_close(z1[i], flow(x), name="z1", rtol=1e-8, atol=1e-9)
        assert_close(lp1[i], float(logp0[i]) - math.log(abs(np.linalg.det(Jm))), name="log p1", rtol=1e-6, atol=1e-6)


def test_hutchinson_single_probe_is_quadratic_form():
    f = TanhField(4, 5, seed=14)
    g = _gen(15)
    z = torch.randn(3, 4, generator=g, dtype=DT)
    eps = torch.randn(2, 3, 4, generator=g, dtype=DT)
    est = sol.hutchinson_trace(f, 0.3, z, eps)
    ref = []
    for b in range(3):
        J = torch.autograd.functional.jacobian(lambda x: f(0.3, x[None])[0], z[b])
        ref.append(float(sum(eps[s, b] @ J @ eps[s, b] for s in range(2)) / 2))
    assert_close(est, ref, name="hutchinson estimate")


def test_hutchinson_unbiased_and_variance_by_enumeration():
    J = torch.randn(5, 5, generator=_gen(16), dtype=DT)
    signs = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=5)), dtype=DT)
    f = lambda t, z: z @ J.T  # noqa: E731
    z = torch.zeros(1, 5, dtype=DT)
    vals = torch.stack([sol.hutchinson_trace(f, 0.0, z, e[None, None])[0] for e in signs])
    assert_close(vals.mean(), torch.trace(J), name="E[estimate] over all 32 sign vectors")
    assert_close(sol.hutchinson_variance(J, "rademacher"), vals.var(unbiased=False), name="Rademacher variance")


def test_hutchinson_gaussian_variance_monte_carlo():
    J = torch.randn(4, 4, generator=_gen(17), dtype=DT)
    e = torch.randn(400000, 4, generator=_gen(18), dtype=DT)
    q = ((e @ J.T) * e).sum(1)
    assert_close(q.mean(), torch.trace(J), name="mean", rtol=0, atol=5 * float(q.std()) / 632)
    assert_close(sol.hutchinson_variance(J, "gaussian"), q.var(), name="Gaussian variance", rtol=0.02)


# ---------------------------------------------------------------- exercise 3
@pytest.mark.parametrize("seed", [19, 20, 21])
def test_growth_rate_is_the_sharp_exponential_bound(seed):
    A = torch.randn(4, 4, generator=_gen(seed), dtype=DT)
    A[0, 1] += 4.0  # non-normal
    c = float(sol.growth_rate(A))
    ts = np.concatenate([np.logspace(-6, 1, 60)])
    rates = [math.log(np.linalg.norm(expm(t * A.numpy()), 2)) / t for t in ts]
    assert_true(max(rates) <= c + 1e-6, "bound violated")
    assert_close(c, rates[0], name="rate at t -> 0", rtol=1e-4, atol=1e-4)
    assert_true(c < float(torch.linalg.matrix_norm(A, 2)), "sharper than Gronwall's ||A||_2")


def test_steady_state_penalty_linear_closed_form():
    A = -torch.eye(2, dtype=DT) + 0.3 * torch.randn(2, 2, generator=_gen(22), dtype=DT)
    z0 = torch.randn(7, 2, generator=_gen(23), dtype=DT)
    T = 0.8
    val = sol.steady_state_penalty(LinearField(A), z0, T, 40)
    M1, M2 = expm(T * A.numpy()), expm(2 * T * A.numpy())
    ref = np.linalg.norm(z0.numpy() @ (M2 - M1).T, axis=1).mean()
    assert_close(val, ref, name="steady-state penalty", rtol=1e-8)


def test_steady_state_penalty_nonlinear_vs_torchdiffeq():
    f = TanhField(3, 6, seed=24, time_dependent=False)
    z0 = torch.randn(5, 3, generator=_gen(25), dtype=DT)
    with torch.no_grad():
        zs = odeint(f, z0, torch.tensor([0.0, 1.0, 2.0], dtype=DT), rtol=1e-12, atol=1e-12)
        # integral_T^2T f(z(t)) dt by quadrature along the dopri5 trajectory
        tt = torch.linspace(1.0, 2.0, 2001, dtype=DT)
        path = odeint(f, zs[1], tt - 1.0 + 1.0, rtol=1e-12, atol=1e-12)
        vals = torch.stack([f(0.0, p) for p in path])
        integral = torch.trapezoid(vals, tt, dim=0)
    assert_close(integral, zs[2] - zs[1], name="quadrature sanity", rtol=1e-5, atol=1e-6)
    assert_close(sol.steady_state_penalty(f, z0, 1.0, 50), integral.norm(dim=1).mean(), name="penalty",
                 rtol=1e-5, atol=1e-6)


def test_steady_state_penalty_is_differentiable_in_the_parameters():
    # part (d) trains with it: autograd gradient vs central finite differences (torch.autograd.gradcheck)
    f = TanhField(2, 4, seed=26, time_dependent=False)
    z0 = torch.randn(3, 2, generator=_gen(27), dtype=DT)
    names = [n for n, _ in f.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in f.parameters())

    def pen(*ps):
        return sol.steady_state_penalty(lambda t, z: torch.func.functional_call(f, dict(zip(names, ps)), (t, z)), z0, 0.7, 3)

    assert_true(torch.autograd.gradcheck(pen, params), "gradcheck")


@pytest.mark.parametrize("m", [-2.0, -0.3, -9.0])
def test_euler_monotone_step_is_sharp(m):
    hs = sol.euler_monotone_step(m)
    x = np.linspace(-5.0, 5.0, 4001)
    fields = [lambda x: m * x, lambda x: m * np.sin(x), lambda x: (m + 1) * x - np.sin(x), lambda x: m * x + x**3]
    for f in fields:  # every field here has inf f' = m
        assert_true(bool(np.all(np.diff(x + 0.999 * hs * f(x)) > 0)), "order kept below h*")
    # brute force over step sizes for f = m x: the Euler map stops being increasing exactly at h*
    hgrid = np.linspace(0.01, 3 * hs, 3000)
    increasing = np.array([np.all(np.diff(x + h * m * x) > 0) for h in hgrid])
    assert_close(hgrid[~increasing].min(), hs, name="first non-increasing step", rtol=0, atol=3 * hs / 3000)


def test_euler_monotone_step_nonnegative_slopes():
    for m in (0.0, 0.2, 5.0):
        assert_true(math.isinf(sol.euler_monotone_step(m)), "inf for f' >= 0")


def test_flow_map_slope_closed_form_and_scipy():
    x0 = torch.linspace(-3.0, 3.0, 25, dtype=DT)
    T = 1.2
    xT, slope = sol.flow_map_slope(lambda t, x: torch.sin(x), x0, T, 100)
    E, u = math.exp(T), torch.tan(x0 / 2)
    assert_close(xT, 2 * torch.atan(E * u), name="x(T) of dx/dt = sin x", rtol=1e-8, atol=1e-9)
    assert_close(slope, E / torch.cos(x0 / 2) ** 2 / (1 + E**2 * u**2), name="slope", rtol=1e-8, atol=1e-9)
    # time-dependent field: central finite differences of scipy's DOP853 flow map
    def f(t, x):
        return torch.sin(3 * t) * x - x**3 / 3

    def rhs(t, y):
        return [math.sin(3 * t) * y[0] - y[0] ** 3 / 3]

    def flow(x):
        return solve_ivp(rhs, (0.0, 2.0), [x], method="DOP853", rtol=1e-13, atol=1e-13).y[0, -1]
    x0 = torch.tensor([-1.5, -0.2, 0.4, 2.0], dtype=DT)
    xT, slope = sol.flow_map_slope(f, x0, 2.0, 200)
    eps = 1e-5
    fd = [(flow(float(x) + eps) - flow(float(x) - eps)) / (2 * eps) for x in x0]
    assert_close(xT, [flow(float(x)) for x in x0], name="x(T)", rtol=1e-8, atol=1e-9)
    assert_close(slope, fd, name="slope vs finite differences", rtol=1e-6, atol=1e-8)
    assert_true(bool(torch.all(slope > 0)), "positive slopes")


def test_digits_pca_matches_sklearn():
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA

    data = sol.digits_pca(n_train=300, n_test=500, dim=8, seed=0)
    X, y = load_digits(return_X_y=True)
    perm = np.random.default_rng(0).permutation(len(X))
    tr, te = perm[:300], perm[300:800]
    assert_true(bool(np.array_equal(data["ytr"].numpy(), y[tr])) and bool(np.array_equal(data["yte"].numpy(), y[te])), "labels")
    pca = PCA(8, svd_solver="full").fit(X[tr] / 16)
    scale = math.sqrt(pca.explained_variance_[0])
    for key, idx in (("Xtr", tr), ("Xte", te)):
        ref = pca.transform(X[idx] / 16) / scale
        ours = data[key].numpy()
        signs = np.sign((ref * ours).sum(axis=0))  # principal axes are defined up to sign
        assert_close(ours, ref * signs, name=f"{key} vs sklearn PCA", rtol=1e-8, atol=1e-9)
    assert_close(data["Xtr"].numpy()[:, 0].std(ddof=1), 1.0, name="unit variance of the first coordinate", rtol=1e-10)


def test_notebook_helper_cell_is_the_module_code():
    import inspect
    import json
    from pathlib import Path

    nb = json.loads((Path(__file__).resolve().parents[2] / "source" / "ps10" / "ps10.ipynb").read_text())
    cell = next("".join(c["source"]) for c in nb["cells"]
                if c["metadata"].get("nbgrader", {}).get("grade_id") == "ex3_digits")
    for obj in (sol.digits_pca, sol.AutonomousField, sol.OdeClassifier, sol.train_ode_classifier):
        assert_true(inspect.getsource(obj).rstrip() in cell, f"{obj.__name__} differs between the module and the notebook")


def test_robustness_measures_vs_torchdiffeq_and_sklearn():
    from sklearn.metrics import accuracy_score

    g = _gen(28)
    field = sol.AutonomousField(3, 6, g)
    readout = torch.nn.Linear(3, 4, dtype=DT)
    X = torch.randn(30, 3, generator=g, dtype=DT)
    y = torch.randint(0, 4, (30,), generator=g)
    noise = torch.tensor([0.1, 0.7], dtype=DT)[:, None, None] * torch.randn(2, 30, 3, generator=g, dtype=DT)
    res = sol.robustness_measures(field, readout, X, y, noise, 1.0, 60)  # 60 RK4 steps: close to the exact flow
    with torch.no_grad():
        ts = torch.tensor([0.0, 1.0, 2.0], dtype=DT)
        zs = odeint(field, X, ts, rtol=1e-12, atol=1e-12)
        zN = [odeint(field, X + d, ts[:2], rtol=1e-12, atol=1e-12)[-1] for d in noise]
        assert_close(res["accuracy"], accuracy_score(y, readout(zs[1]).argmax(1)), name="accuracy")
        assert_close(res["noisy_accuracy"], [accuracy_score(y, readout(z).argmax(1)) for z in zN], name="noisy accuracy")
        sens = [np.mean(np.linalg.norm((z - zs[1]).numpy(), axis=1) / np.linalg.norm(d.numpy(), axis=1))
                for z, d in zip(zN, noise)]
        assert_close(res["sensitivity"], sens, name="sensitivity", rtol=1e-7)
        assert_close(res["drift"], np.linalg.norm(field(0.0, zs[1]).numpy(), axis=1).mean(), name="drift", rtol=1e-7)
        assert_close(res["steady_state"], np.linalg.norm((zs[2] - zs[1]).numpy(), axis=1).mean(), name="steady state",
                     rtol=1e-7)


def test_tisode_comparison_on_digits():
    data = sol.digits_pca()
    noise = torch.tensor([0.5, 1.0], dtype=DT)[:, None, None] * torch.randn(500, 8, generator=_gen(29), dtype=DT)
    res = sol.tisode_comparison(data, 0.3, [0, 1], noise)
    assert_true(res["noisy_accuracy"].shape == (2, 2, 2) and res["drift"].shape == (2, 2), "shapes")
    # the trained models are the helper's; their measures are robustness_measures of those models
    for s, seed in enumerate([0, 1]):
        for k, lam in enumerate([0.0, 0.3]):
            m = sol.train_ode_classifier(data, lam, seed, sol.steady_state_penalty)
            with torch.no_grad():
                acc = (m(data["Xte"]).argmax(1) == data["yte"]).double().mean()
            assert_close(res["accuracy"][s, k], float(acc), name="accuracy of the trained model")
    assert_true(bool(np.all(res["steady_state"][:, 1] < 0.2 * res["steady_state"][:, 0])), "steady-state term shrinks")
    assert_true(bool(np.all(res["sensitivity"][:, 1] < 0.6 * res["sensitivity"][:, 0])), "sensitivity shrinks")
    assert_true(bool(np.all(res["accuracy"] > 0.75)), "both models learn")


# ---------------------------------------------------------------- exercise 4
def _w2(a, b):
    n = len(a)
    return math.sqrt(ot.emd2(np.full(n, 1 / n), np.full(len(b), 1 / len(b)), ot.dist(a, b)))


def test_displacement_interpolation_is_a_constant_speed_geodesic():
    g = _gen(26)
    x0 = torch.randn(40, 2, generator=g, dtype=DT)
    x1 = torch.randn(40, 2, generator=g, dtype=DT) * torch.tensor([2.0, 0.5], dtype=DT) + 3.0
    W = _w2(x0.numpy(), x1.numpy())
    for t in [0.0, 0.3, 0.75, 1.0]:
        xt = sol.displacement_interpolation(x0, x1, t).numpy()
        assert_close(_w2(x0.numpy(), xt), t * W, name=f"W2(mu0, mu_{t})", rtol=1e-7, atol=1e-7)
        assert_close(_w2(xt, x1.numpy()), (1 - t) * W, name=f"W2(mu_{t}, mu1)", rtol=1e-7, atol=1e-7)


def test_displacement_interpolation_brute_force():
    g = _gen(27)
    x0, x1 = torch.randn(5, 2, generator=g, dtype=DT), torch.randn(5, 2, generator=g, dtype=DT)
    best = min(itertools.permutations(range(5)), key=lambda p: float(((x0 - x1[list(p)]) ** 2).sum()))
    ref = 0.6 * x0 + 0.4 * x1[list(best)]
    got = sol.displacement_interpolation(x0, x1, 0.4)
    key = lambda a: np.lexsort(a.T)  # noqa: E731
    assert_close(got.numpy()[key(got.numpy())], ref.numpy()[key(ref.numpy())], name="atoms")


def test_gaussian_ot_map_vs_sqrtm_and_emd():
    g = _gen(28)
    B0, B1 = torch.randn(3, 3, generator=g, dtype=DT), torch.randn(3, 3, generator=g, dtype=DT)
    S0, S1 = B0 @ B0.T + 0.5 * torch.eye(3, dtype=DT), B1 @ B1.T + 0.2 * torch.eye(3, dtype=DT)
    m0, m1 = torch.randn(3, generator=g, dtype=DT), torch.randn(3, generator=g, dtype=DT)
    A, b = sol.gaussian_ot_map(m0, S0, m1, S1)
    R = np.real(sqrtm(S0.numpy()))
    Ri = np.linalg.inv(R)
    assert_close(A, Ri @ np.real(sqrtm(R @ S1.numpy() @ R)) @ Ri, name="A vs scipy sqrtm formula")
    assert_close(A @ S0 @ A.T, S1, name="A S0 A^T = S1")
    assert_close(A @ m0 + b, m1, name="means")
    # W2^2 of the map equals the Bures formula and the exact OT cost of the samples is close
    cost = float(((m0 - m1) ** 2).sum() + torch.trace((torch.eye(3, dtype=DT) - A) @ S0 @ (torch.eye(3, dtype=DT) - A)))
    bures = float(((m0 - m1) ** 2).sum() + torch.trace(S0 + S1) - 2 * np.trace(np.real(sqrtm(R @ S1.numpy() @ R))))
    assert_close(cost, bures, name="transport cost vs Bures")


def test_gaussian_ot_map_one_dimensional():
    A, b = sol.gaussian_ot_map(torch.tensor([1.0], dtype=DT), torch.tensor([[4.0]], dtype=DT),
                               torch.tensor([-2.0], dtype=DT), torch.tensor([[9.0]], dtype=DT))
    assert_close(A, [[1.5]], name="A")
    assert_close(b, [-3.5], name="b")


def test_line_shape_score():
    g = _gen(29)
    x0, x1 = torch.randn(30, 2, generator=g, dtype=DT), torch.randn(30, 2, generator=g, dtype=DT) + 2.0
    geo = torch.stack([sol.displacement_interpolation(x0, x1, t) for t in np.linspace(0, 1, 6)])
    assert_close(sol.line_shape_score(geo), 1.0, name="geodesic")
    # detour through a translated copy: W2 to a translate is the translation length
    xs = torch.stack([x0, x0 + torch.tensor([3.0, 0.0], dtype=DT), x0 + torch.tensor([3.0, 4.0], dtype=DT)])
    assert_close(sol.line_shape_score(xs), 7.0 / 5.0, name="detour 3 + 4 over 5")
    W = [_w2(xs[i].numpy(), xs[i + 1].numpy()) for i in range(2)]
    assert_close(sol.line_shape_score(xs), sum(W) / _w2(xs[0].numpy(), xs[2].numpy()), name="vs POT")


# ---------------------------------------------------------------- exercise 5
def test_mean_field_velocity_monte_carlo():
    x = torch.randn(6, 3, generator=_gen(30), dtype=DT)
    for sigma in (0.7, 1.3):
        w = sigma * torch.randn(400000, 3, generator=_gen(31), dtype=DT)
        samples = -(torch.sin(x @ w.T)[..., None] * w[None])  # (6, M, 3)
        mc, se = samples.mean(1), samples.std(1) / math.sqrt(w.shape[0])
        got = sol.mean_field_velocity(x, sigma)
        assert_true(bool(((got - mc).abs() <= 5 * se + 1e-12).all()), f"MC mismatch at sigma={sigma}")


def test_mean_field_resnet_loop_and_limit():
    g = _gen(32)
    x0, w = torch.randn(4, 2, generator=g, dtype=DT), torch.randn(3, 2, generator=g, dtype=DT)
    xs = sol.mean_field_resnet(x0, w, 1.5, 5)
    x = x0.numpy().copy()
    for k in range(5):
        v = np.zeros_like(x)
        for m in range(3):
            v += -np.sin(x @ w[m].numpy())[:, None] * w[m].numpy()[None] / 3
        x = x + 0.3 * v
        assert_close(xs[k + 1], x, name=f"block {k + 1}")


def test_convergence_rates():
    x0 = torch.randn(20, 2, generator=_gen(33), dtype=DT)
    ns, e, p = sol.depth_convergence_rate(x0, 1.0, 2.0)
    ms, r, q = sol.width_convergence_rate(x0, 1.0, 2.0, _gen(34))
    assert_close(p, np.polyfit(np.log(ns), np.log(e), 1)[0], name="p is the fitted slope")
    assert_close(q, np.polyfit(np.log(ms), np.log(r), 1)[0], name="q is the fitted slope")
    assert_true(-1.1 < p < -0.9, f"depth exponent {p:.3f}, Euler rate is -1")
    assert_true(-0.6 < q < -0.4, f"width exponent {q:.3f}, Monte Carlo rate is -1/2")
