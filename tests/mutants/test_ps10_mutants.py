"""ps10 (neural ODEs) mutation check: correct alternatives get full marks, plausible bugs lose
exactly the cells meant to catch them.

Grading the whole notebook takes ~10 s, so variants share gradings. Every variant has a footprint:
the solution cells whose graded cells it can change (its own cell, plus downstream cells that call
its functions). A grading carries bugs with disjoint footprints only, and each variant asserts on
the graded cells of its footprint. The ex1 bugs below keep rk4_solve fourth order on
time-invariant fields, so they cannot reach the ex3 or ex5 cells that call rk4_solve; the ex3
steady-state bugs reach the TisODE cells (steady_state_penalty is the training penalty there).
Alternatives are all correct, so any combination of them must get full marks.
"""

from __future__ import annotations

import pytest
from variants import edit, swap_functions

pytestmark = pytest.mark.slow

PS = "ps10"

CELLS = {
    "ex1_neural_ode": ["ex1_rk4_linear", "ex1_rk4_time_dependence", "ex1_adjoint_linear_z0", "ex1_adjoint_linear_A",
                       "ex1_adjoint_vs_backprop"],
    "ex2_cnf": ["ex2_cnf_linear_gaussian", "ex2_cnf_nonlinear", "ex2_hutchinson_probe", "ex2_variance_rademacher",
                "ex2_variance_gaussian"],
    "ex3_robustness": ["ex3_growth_rate_valid", "ex3_growth_rate_sharp", "ex3_steady_state_linear",
                       "ex3_steady_state_nonlinear"],
    "ex3_order": ["ex3_euler_order_step", "ex3_flow_slope_order"],
    "ex3_tisode": ["ex3_robustness_measures", "ex3_tisode_regulariser", "ex3_tisode_accuracy"],
    "ex4_wasserstein": ["ex4_interp_endpoints", "ex4_interp_geodesic", "ex4_gauss_pushforward", "ex4_gauss_optimal",
                        "ex4_lss_hand", "ex4_lss_random"],
    "ex5_deep_limits": ["ex5_velocity_monte_carlo", "ex5_resnet_blocks", "ex5_depth_rate", "ex5_width_rate"],
}

# ------------------------------------------------------------------ correct alternatives
ALT_EX1 = '''
def rk4_solve(f, z0, t):
    # Butcher tableau in a loop, states collected into a preallocated tensor
    A = [[], [0.5], [0.0, 0.5], [0.0, 0.0, 1.0]]
    c, w = [0.0, 0.5, 0.5, 1.0], [1 / 6, 1 / 3, 1 / 3, 1 / 6]
    out = torch.empty((len(t),) + tuple(z0.shape), dtype=z0.dtype)
    out[0] = z0
    z = z0
    for k in range(len(t) - 1):
        h = t[k + 1] - t[k]
        ks = []
        for i in range(4):
            zi = z + h * sum(a * kk for a, kk in zip(A[i], ks)) if i else z
            ks.append(f(t[k] + c[i] * h, zi))
        z = z + h * sum(wi * ki for wi, ki in zip(w, ks))
        out[k + 1] = z
    return out


def adjoint_gradients(f, z1, dL_dz1, t0, t1, steps):
    # the augmented state [z, a, dL/dtheta] packed into one row, integrated by rk4_solve on a
    # decreasing grid; vector-Jacobian products by torch.func.vjp
    params = list(f.parameters())
    names = [n for n, _ in f.named_parameters()]
    B, D = z1.shape
    sizes = [B * D, B * D] + [p.numel() for p in params]

    def unpack(y):
        parts = torch.split(y[0], sizes)
        return parts[0].reshape(B, D), parts[1].reshape(B, D)

    def aug(s, y):
        z, a = unpack(y)
        def fz(z_, *ps):
            return torch.func.functional_call(f, dict(zip(names, ps)), (s, z_))
        out, vjp_fn = torch.func.vjp(fz, z, *[p.detach() for p in params])
        grads = vjp_fn(a)
        return torch.cat([out.reshape(-1), -grads[0].reshape(-1)] + [-g.reshape(-1) for g in grads[1:]])[None]

    y1 = torch.cat([z1.reshape(-1), dL_dz1.reshape(-1)] + [torch.zeros(p.numel(), dtype=z1.dtype) for p in params])[None]
    grid = torch.linspace(t1, t0, steps + 1, dtype=z1.dtype)
    with torch.no_grad():
        y0 = rk4_solve(aug, y1, grid)[-1]
    parts = torch.split(y0[0], sizes)
    return parts[1].reshape(B, D), [q.reshape(p.shape) for q, p in zip(parts[2:], params)]
'''

ALT_EX2 = '''
def cnf_forward(f, z0, logp0, t0, t1, steps):
    # full Jacobian per sample with torch.autograd.functional.jacobian, state as a list of pairs
    def rhs(s, z):
        fz = f(s, z).detach()
        tr = torch.stack([torch.trace(torch.autograd.functional.jacobian(lambda x: f(s, x[None])[0], zi)) for zi in z])
        return fz, -tr
    h = (t1 - t0) / steps
    z, lp = z0.clone(), logp0.clone()
    for k in range(steps):
        s = t0 + k * h
        k1 = rhs(s, z)
        k2 = rhs(s + h / 2, z + h / 2 * k1[0])
        k3 = rhs(s + h / 2, z + h / 2 * k2[0])
        k4 = rhs(s + h, z + h * k3[0])
        z = z + h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
        lp = lp + h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
    return z, lp


def hutchinson_trace(f, t, z, eps):
    # torch.func.vjp, probes stacked with vmap-free loop in numpy at the end
    _, vjp_fn = torch.func.vjp(lambda x: f(t, x), z)
    vals = [((vjp_fn(e)[0]) * e).sum(1).detach().numpy() for e in eps]
    return torch.tensor(np.mean(vals, axis=0), dtype=z.dtype)


def hutchinson_variance(J, kind):
    # expanded: Var_G = ||J||_F^2 + tr(J^2); Rademacher removes the 2 sum_i J_ii^2 of the diagonal
    J = J.numpy()
    var = float((J * J).sum() + np.trace(J @ J))
    if kind == "rademacher":
        var -= 2 * float((np.diag(J) ** 2).sum())
    return torch.tensor(var, dtype=torch.float64)
'''

ALT_EX3 = '''
def growth_rate(A):
    # numpy, from the derivative of ||delta||^2: the top eigenvalue of the symmetric part
    S = 0.5 * (A.numpy() + A.numpy().T)
    return torch.tensor(np.linalg.eigvalsh(S).max(), dtype=torch.float64)


def steady_state_penalty(f, z0, T, steps):
    # own RK4 loop, no rk4_solve; the integral of f from T to 2T is z(2T) - z(T)
    h = T / steps
    z, zT = z0, None
    for k in range(2 * steps):
        s = k * h
        k1 = f(s, z); k2 = f(s + h / 2, z + h / 2 * k1); k3 = f(s + h / 2, z + h / 2 * k2); k4 = f(s + h, z + h * k3)
        z = z + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        if k + 1 == steps:
            zT = z
    return torch.linalg.vector_norm(z - zT, dim=1).mean()
'''

ALT_EX3_ORDER = '''
def euler_monotone_step(slope_min):
    # numpy infinity, reciprocal of the size of the most negative slope
    return float(np.inf) if slope_min >= 0 else float(1.0 / abs(slope_min))


def flow_map_slope(f, x0, T, steps):
    # derivative of the discrete RK4 flow map by autograd through an own RK4 loop (rows are independent)
    x = x0.detach().clone().requires_grad_(True)
    h = T / steps
    z = x[:, None]
    for k in range(steps):
        s = k * h
        k1 = f(s, z); k2 = f(s + h / 2, z + h / 2 * k1); k3 = f(s + h / 2, z + h / 2 * k2); k4 = f(s + h, z + h * k3)
        z = z + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    (g,) = torch.autograd.grad(z.sum(), x)
    return z[:, 0].detach(), g
'''

ALT_EX3_TISODE = '''
def robustness_measures(field, readout, X, y, noise, T, steps):
    # every noise level in one batch, statistics in numpy, 0-dim tensors returned for the scalars
    L, m, D = noise.shape
    grid = torch.linspace(0.0, T, steps + 1, dtype=torch.float64)
    with torch.no_grad():
        Z = rk4_solve(field, torch.cat([X[None], X[None] + noise]).reshape(-1, D), grid)[-1].reshape(L + 1, m, D)
        accs = (readout(Z).argmax(-1).numpy() == y.numpy()[None]).mean(axis=1)
        dz = (Z[1:] - Z[:1]).numpy()
        sens = (np.linalg.norm(dz, axis=2) / np.linalg.norm(noise.numpy(), axis=2)).mean(axis=1)
        drift = np.linalg.norm(field(0.0, Z[0]).numpy(), axis=1).mean()
        ss = steady_state_penalty(field, X, T, steps)
    return {"accuracy": torch.tensor(accs[0]), "noisy_accuracy": torch.tensor(accs[1:]), "sensitivity": torch.tensor(sens),
            "drift": torch.tensor(drift), "steady_state": torch.as_tensor(ss).detach()}


def tisode_comparison(data, lam, seeds, noise):
    # TisODE trained first, results collected per key and converted at the end
    out = {}
    for seed in seeds:
        tis = train_ode_classifier(data, lam, seed, steady_state_penalty)
        van = train_ode_classifier(data, 0.0, seed, steady_state_penalty)
        pair = [robustness_measures(mdl.field, mdl.readout, data["Xte"], data["yte"], noise, mdl.T, mdl.steps)
                for mdl in (van, tis)]
        for key in pair[0]:
            out.setdefault(key, []).append([np.asarray(r[key], dtype=np.float64) for r in pair])
    return {key: np.array(v) for key, v in out.items()}
'''

ALT_EX4 = '''
def displacement_interpolation(x0, x1, t):
    # POT's exact plan: for uniform weights it is a permutation matrix / n
    import ot
    n = x0.shape[0]
    G = ot.emd(np.full(n, 1.0 / n), np.full(n, 1.0 / n), ot.dist(x0.numpy(), x1.numpy()))
    return (1 - t) * x0 + t * torch.as_tensor(n * G @ x1.numpy())


def gaussian_ot_map(m0, S0, m1, S1):
    # scipy.linalg.sqrtm, numpy arrays returned
    from scipy.linalg import sqrtm
    S0, S1 = S0.numpy(), S1.numpy()
    R = np.real(sqrtm(S0))
    Ri = np.linalg.inv(R)
    A = Ri @ np.real(sqrtm(R @ S1 @ R)) @ Ri
    A = (A + A.T) / 2
    return A, m1.numpy() - A @ m0.numpy()


def line_shape_score(xs):
    # W2 by POT's emd2 (squared cost), square root taken
    import ot
    n = xs.shape[1]
    u = np.full(n, 1.0 / n)
    w2 = lambda a, b: np.sqrt(ot.emd2(u, u, ot.dist(a.numpy(), b.numpy())))
    return float(sum(w2(xs[l], xs[l + 1]) for l in range(len(xs) - 1)) / w2(xs[0], xs[-1]))
'''

ALT_EX5 = '''
def mean_field_velocity(x, sigma):
    # Stein's lemma form: F(x) = -sigma^2 grad_x E[-cos(w.x)] ... written with numpy
    xn = x.numpy()
    return torch.tensor(-sigma**2 * xn * np.exp(-0.5 * sigma**2 * (xn**2).sum(1, keepdims=True)))


def mean_field_resnet(x0, w, T, N):
    # einsum, states preallocated
    out = torch.empty((N + 1,) + tuple(x0.shape), dtype=x0.dtype)
    out[0] = x0
    for k in range(N):
        out[k + 1] = out[k] - (T / N) * torch.einsum("bm,md->bd", torch.sin(out[k] @ w.T), w) / w.shape[0]
    return out


def depth_convergence_rate(x0, sigma, T):
    # reference by scipy's DOP853, RMS error, depths 10..160
    from scipy.integrate import solve_ivp
    D = x0.shape[1]
    rhs = lambda s, y: mean_field_velocity(torch.tensor(y.reshape(-1, D)), sigma).numpy().ravel()
    ref = solve_ivp(rhs, (0, T), x0.numpy().ravel(), method="DOP853", rtol=1e-12, atol=1e-12).y[:, -1].reshape(-1, D)
    Ns = np.array([10, 20, 40, 80, 160])
    errs = []
    for N in Ns:
        x = x0.clone()
        for _ in range(N):
            x = x + (T / N) * mean_field_velocity(x, sigma)
        errs.append(np.sqrt(((x.numpy() - ref) ** 2).mean()))
    return Ns, np.array(errs), np.polyfit(np.log(Ns), np.log(errs), 1)[0]


def width_convergence_rate(x0, sigma, T, generator):
    # 30 draws per width, 10 blocks, mean absolute error inside the RMS over draws
    Ms, N, draws = [8, 32, 128, 512], 10, 30
    ref = x0.clone()
    for _ in range(N):
        ref = ref + (T / N) * mean_field_velocity(ref, sigma)
    errs = []
    for M in Ms:
        sq = []
        for _ in range(draws):
            w = torch.randn(M, x0.shape[1], generator=generator, dtype=x0.dtype) * sigma
            sq.append(float(((mean_field_resnet(x0, w, T, N)[-1] - ref) ** 2).mean()))
        errs.append(np.sqrt(np.mean(sq)))
    return np.array(Ms), np.array(errs), float(np.polyfit(np.log(Ms), np.log(errs), 1)[0])
'''

ALTERNATIVES = {
    "ex1_tableau_loop_packed_state_func_vjp": ("ex1_neural_ode", ALT_EX1),
    "ex2_full_jacobian_func_vjp_expanded_variance": ("ex2_cnf", ALT_EX2),
    "ex3_numpy_eigvalsh_own_rk4_loop": ("ex3_robustness", ALT_EX3),
    "ex3_order_numpy_inf_autograd_through_rk4": ("ex3_order", ALT_EX3_ORDER),
    "ex3_tisode_batched_numpy_tisode_first": ("ex3_tisode", ALT_EX3_TISODE),
    "ex4_pot_plan_scipy_sqrtm_numpy_outputs": ("ex4_wasserstein", ALT_EX4),
    "ex5_numpy_einsum_scipy_reference_other_sizes": ("ex5_deep_limits", ALT_EX5),
}

# ------------------------------------------------------------------ plausible bugs
# name -> (solution cell, [(old, new), ...], cells that must score 0); every other cell of the same
# exercise must keep full marks.
BUGS = {
    # torchdiffeq's "rk4" is the 3/8 rule: fourth order too, but not the classical method asked for
    "ex1_rk4_three_eighths_rule": ("ex1_neural_ode", [
        ("""        k2 = f(s + h / 2, z + h / 2 * k1)
        k3 = f(s + h / 2, z + h / 2 * k2)
        k4 = f(s + h, z + h * k3)
        z = z + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)""",
         """        k2 = f(s + h / 3, z + h / 3 * k1)
        k3 = f(s + 2 * h / 3, z + h * (k2 - k1 / 3))
        k4 = f(s + h, z + h * (k1 - k2 + k3))
        z = z + h / 8 * (k1 + 3 * k2 + 3 * k3 + k4)""")],
        ["ex1_rk4_time_dependence"]),
    # every stage evaluated at the left end of the interval
    "ex1_rk4_stages_at_left_time": ("ex1_neural_ode", [
        ("k2 = f(s + h / 2, z + h / 2 * k1)", "k2 = f(s, z + h / 2 * k1)"),
        ("k3 = f(s + h / 2, z + h / 2 * k2)", "k3 = f(s, z + h / 2 * k2)"),
        ("k4 = f(s + h, z + h * k3)", "k4 = f(s, z + h * k3)")],
        ["ex1_rk4_time_dependence"]),
    # sign error in the adjoint ODE: da/dt = + a^T df/dz
    "ex1_adjoint_sign": ("ex1_neural_ode", [
        ("return fz.detach(), -grads[0], gp", "return fz.detach(), grads[0], gp")],
        ["ex1_adjoint_linear_z0", "ex1_adjoint_linear_A", "ex1_adjoint_vs_backprop"]),
    # parameter gradient accumulated with the wrong sign
    "ex1_param_grad_sign": ("ex1_neural_ode", [
        ("gp = [torch.zeros_like(p) if gj is None else -gj", "gp = [torch.zeros_like(p) if gj is None else gj")],
        ["ex1_adjoint_linear_A", "ex1_adjoint_vs_backprop"]),
    # backward sweep evaluates f at the mirrored (forward) times: only time-dependent fields notice
    "ex1_adjoint_forward_times": ("ex1_neural_ode", [
        ("        s = t1 + k * h\n        f1, a1, g1", "        s = t0 - k * h\n        f1, a1, g1")],
        ["ex1_adjoint_vs_backprop"]),
    # log-density increases by the trace instead of decreasing
    "ex2_logdensity_sign": ("ex2_cnf", [
        ("lp = lp - h / 6 * (d1", "lp = lp + h / 6 * (d1")],
        ["ex2_cnf_linear_gaussian", "ex2_cnf_nonlinear"]),
    # RK4 for z but Euler for log p: exact when the trace is constant (linear field), not otherwise
    "ex2_logdensity_euler": ("ex2_cnf", [
        ("lp = lp - h / 6 * (d1 + 2 * d2 + 2 * d3 + d4)", "lp = lp - h * d1")],
        ["ex2_cnf_nonlinear"]),
    # probes summed, not averaged
    "ex2_hutchinson_sum": ("ex2_cnf", [
        ("return est / eps.shape[0]", "return est")],
        ["ex2_hutchinson_probe"]),
    # variance with J instead of its symmetric part
    "ex2_variance_not_symmetrized": ("ex2_cnf", [
        ("S = (J + J.T) / 2", "S = J")],
        ["ex2_variance_rademacher", "ex2_variance_gaussian"]),
    # the spectral abscissa: not a bound for non-normal A
    "ex3_spectral_abscissa": ("ex3_robustness", [
        ("return torch.linalg.eigvalsh((A + A.T) / 2)[-1]", "return torch.linalg.eigvals(A).real.max()")],
        ["ex3_growth_rate_valid", "ex3_growth_rate_sharp"]),
    # Gronwall's Lipschitz rate: valid but not the smallest
    "ex3_gronwall_norm": ("ex3_robustness", [
        ("return torch.linalg.eigvalsh((A + A.T) / 2)[-1]", "return torch.linalg.matrix_norm(A, 2)")],
        ["ex3_growth_rate_sharp"]),
    # integral over [0, T] instead of [T, 2T]
    "ex3_steady_state_wrong_window": ("ex3_robustness", [
        ("return (zs[-1] - zs[steps]).norm(dim=1).mean()", "return (zs[steps] - zs[0]).norm(dim=1).mean()")],
        ["ex3_steady_state_linear", "ex3_steady_state_nonlinear"]),
    # the penalty evaluated without a graph: it is right as a number, but TisODE then trains like the vanilla model
    "ex3_steady_state_no_grad": ("ex3_robustness", [
        ("    zs = rk4_solve(f, z0, grid)\n", "    with torch.no_grad():\n        zs = rk4_solve(f, z0, grid)\n")],
        ["ex3_tisode_regulariser"]),
    # the stability limit of Euler on dz/dt = m z (|1 + h m| < 1) instead of the monotonicity limit
    "ex3_euler_stability_limit": ("ex3_order", [
        ("return math.inf if slope_min >= 0 else -1.0 / slope_min", "return math.inf if slope_min >= 0 else -2.0 / slope_min")],
        ["ex3_euler_order_step"]),
    # a two-sided Lipschitz bound: positive slopes cannot break the order, yet they limit the step here
    "ex3_euler_two_sided": ("ex3_order", [
        ("return math.inf if slope_min >= 0 else -1.0 / slope_min",
         "return math.inf if slope_min == 0 else 1.0 / abs(slope_min)")],
        ["ex3_euler_order_step"]),
    # the logarithm of the slope (the exponential forgotten)
    "ex3_flow_slope_log": ("ex3_order", [
        ("return yT[:, 0], torch.exp(yT[:, 1])", "return yT[:, 0], yT[:, 1]")],
        ["ex3_flow_slope_order"]),
    # the sign of the continuous-flow density formula (log p decreases by the divergence) carried over
    "ex3_flow_slope_sign": ("ex3_order", [
        ("return torch.cat([fx.detach(), d], dim=1)", "return torch.cat([fx.detach(), -d], dim=1)")],
        ["ex3_flow_slope_order"]),
    # displacement of the final state not divided by the size of the input perturbation
    "ex3_sensitivity_unnormalised": ("ex3_tisode", [
        ("sens.append(float(((zN - zT).norm(dim=1) / d.norm(dim=1)).mean()))",
         "sens.append(float((zN - zT).norm(dim=1).mean()))")],
        ["ex3_robustness_measures"]),
    # the drift measured at the inputs instead of at the final states
    "ex3_drift_at_inputs": ("ex3_tisode", [
        ("drift = field(T, zT).norm(dim=1).mean()", "drift = field(T, X).norm(dim=1).mean()")],
        ["ex3_robustness_measures"]),
    # the two models swapped (TisODE in column 0)
    "ex3_tisode_columns_swapped": ("ex3_tisode", [
        ("for w in (0.0, lam)]", "for w in (lam, 0.0)]")],
        ["ex3_tisode_regulariser"]),
    # no matching: atoms paired by index
    "ex4_interp_no_matching": ("ex4_wasserstein", [
        ("    return (1 - t) * x0 + t * x1[perm]", "    return (1 - t) * x0 + t * x1")],
        ["ex4_interp_geodesic"]),
    # a map that pushes forward but is not symmetric (not the Brenier map)
    "ex4_gauss_nonsymmetric_map": ("ex4_wasserstein", [
        ("    A = R0inv @ _sqrtm_psd(R0 @ S1 @ R0) @ R0inv\n    A = (A + A.T) / 2",
         "    A = _sqrtm_psd(S1) @ R0inv")],
        ["ex4_gauss_optimal"]),
    # squared W2 in the score
    "ex4_lss_squared_distances": ("ex4_wasserstein", [
        ("return ((a[rows] - b[cols]) ** 2).sum(dim=1).mean().sqrt()", "return ((a[rows] - b[cols]) ** 2).sum(dim=1).mean()")],
        ["ex4_lss_hand", "ex4_lss_random"]),
    # sigma^2 dropped from the derivative of the characteristic function
    "ex5_velocity_missing_sigma2": ("ex5_deep_limits", [
        ("return -(sigma**2) * x * torch.exp(", "return -x * torch.exp(")],
        ["ex5_velocity_monte_carlo"]),
    # residual scale 1 instead of T/N
    "ex5_resnet_unit_scale": ("ex5_deep_limits", [
        ("        x = x + (T / N) * v", "        x = x + v")],
        # width_convergence_rate runs the student's network, so its measurement is wrong too
        ["ex5_resnet_blocks", "ex5_width_rate"]),
    # the "ResNet" integrated with RK4 blocks: measures RK4's rate, not the residual network's
    "ex5_depth_rk4_blocks": ("ex5_deep_limits", [
        ("""        for _ in range(n):
            x = x + (T / n) * mean_field_velocity(x, sigma)""",
         """        grid_n = torch.linspace(0.0, T, n + 1, dtype=x0.dtype)
        x = rk4_solve(lambda t, y: mean_field_velocity(y, sigma), x, grid_n)[-1]""")],
        ["ex5_depth_rate"]),
    # mean-square error reported instead of its root: the fitted exponent doubles
    "ex5_width_mse_not_rms": ("ex5_deep_limits", [
        ("        errs.append((sq / seeds) ** 0.5)", "        errs.append(sq / seeds)")],
        ["ex5_width_rate"]),
}


# solution cells whose graded cells a variant of the given cell can change
DOWNSTREAM = {"ex3_steady_state_wrong_window": {"ex3_tisode"}, "ex3_steady_state_no_grad": {"ex3_tisode"}}


def _footprint(name):
    return {BUGS[name][0]} | DOWNSTREAM.get(name, set())


def _groups(names, footprint):
    """Pack variants into gradings whose footprints (sets of solution cells) are disjoint."""
    groups: list[list[str]] = []
    for name in names:
        for grp in groups:
            if all(not (footprint(other) & footprint(name)) for other in grp):
                grp.append(name)
                break
        else:
            groups.append([name])
    return groups


ALT_GROUPS = _groups(list(ALTERNATIVES), lambda n: {ALTERNATIVES[n][0]})
BUG_GROUPS = _groups(list(BUGS), _footprint)
ALT_GROUP_OF = {n: i for i, g in enumerate(ALT_GROUPS) for n in g}
BUG_GROUP_OF = {n: i for i, g in enumerate(BUG_GROUPS) for n in g}


_CACHE: dict = {}  # (kind, group index) -> grading, shared by the tests of this module


def _grading(kind, index, grade_variant, solution_source):
    if (kind, index) not in _CACHE:
        table, groups = (ALTERNATIVES, ALT_GROUPS) if kind == "alt" else (BUGS, BUG_GROUPS)
        replace = {}
        for name in groups[index]:
            if kind == "alt":
                cell, code = table[name]
                ref = solution_source(PS, cell)
                src = swap_functions(ref, code)
                assert src != ref
            else:
                cell, pairs, _ = table[name]
                src = edit(solution_source(PS, cell), *pairs)
            replace[cell] = src
        _CACHE[(kind, index)] = grade_variant(PS, replace)
    return _CACHE[(kind, index)]


@pytest.mark.parametrize("name", list(ALTERNATIVES))
def test_correct_alternative_full_marks(name, grade_variant, solution_source):
    cell, _ = ALTERNATIVES[name]
    g = _grading("alt", ALT_GROUP_OF[name], grade_variant, solution_source)
    for t in CELLS[cell]:
        assert g.scores[t] == g.max_scores[t], f"{name}: {t} {g.scores[t]}/{g.max_scores[t]}: {g.messages.get(t)}"


@pytest.mark.parametrize("name", list(BUGS))
def test_plausible_bug_loses_exactly_its_cells(name, grade_variant, solution_source):
    _, _, must_fail = BUGS[name]
    g = _grading("bug", BUG_GROUP_OF[name], grade_variant, solution_source)
    for cell in sorted(_footprint(name)):
        for t in CELLS[cell]:
            if t in must_fail:
                assert g.scores[t] == 0, f"{name}: {t} kept {g.scores[t]}/{g.max_scores[t]}"
            else:
                assert g.scores[t] == g.max_scores[t], f"{name}: {t} lost points: {g.messages.get(t)}"
