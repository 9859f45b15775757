"""ps09 (dynamical systems) mutation check: correct alternatives get full marks, plausible bugs lose the
cells meant to catch them, graded by the real grader.

Grading the whole notebook takes several seconds (its figure cells run too), so variants share gradings:
one grading carries at most one variant per exercise. That is sound because every graded cell of
exercise k calls only exercise k's functions (figure cells use several, but are ungraded).
Each variant has its own test and asserts only on its own exercise's cells; a control test checks that
exercises left untouched in a bug grading keep full marks.
"""

from __future__ import annotations

import pytest
from variants import edit, swap_functions

pytestmark = pytest.mark.slow

PS = "ps09"

CELLS = {
    "ex1": ["ex1_forward_shapes", "ex1_forward_euler", "ex1_error_limit"],
    "ex2": ["ex2_forward", "ex2_costates_autograd", "ex2_binary_bruteforce", "ex2_emsa_step_maximises",
            "ex2_emsa_monotone"],
    "ex3": ["ex3_parareal_hand", "ex3_exact_after_k", "ex3_error_matrix", "ex3_geometric"],
    "ex4": ["ex4_eig_interval", "ex4_verlet_forward", "ex4_verlet_inverse", "ex4_volume_preserving"],
    "ex5": ["ex5_coefficients", "ex5_lm_forward", "ex5_convergence_order"],
    "ex6": ["ex6_characteristics", "ex6_upwind_shift", "ex6_upwind_first_order"],
}
SOLUTION_CELL = {"ex1": "ex1_resnet_euler", "ex2": "ex2_msa", "ex3": "ex3_parareal", "ex4": "ex4_stable",
                 "ex5": "ex5_lm_resnet", "ex6": "ex6_transport"}

# --- correct alternatives: functions swapped into the reference cell --------------------------------

ALT_EX1 = '''
def resnet_forward(x, f, depth, T):
    """Preallocated output; times and steps from torch.linspace."""
    out = torch.empty((depth + 1,) + tuple(x.shape), dtype=x.dtype)
    out[0] = x
    ts = torch.linspace(0.0, T, depth + 1, dtype=torch.float64)
    for layer in range(depth):
        out[layer + 1] = out[layer] + float(ts[layer + 1] - ts[layer]) * f(float(ts[layer]), out[layer])
    return out


def euler_error_limit(A, x, T):
    """scipy's expm on numpy copies; returns a numpy array."""
    from scipy.linalg import expm
    An, xn = A.numpy(), x.numpy()
    return -0.5 * T**2 * (An @ An @ expm(T * An) @ xn)
'''

ALT_EX2 = '''
def costates(xs, thetas, y, h):
    """Back-propagation with torch.autograd through a re-run of the network."""
    states = [xs[0].clone().requires_grad_(True)]
    for t in range(thetas.shape[0]):
        states.append(states[-1] + h * torch.tanh(states[-1]) @ thetas[t].T)
    phi = ((states[-1] - y) ** 2).sum() / (2 * y.shape[0])
    return -torch.stack(torch.autograd.grad(phi, states))


def hamiltonian_argmax_binary(x, p_next, h):
    """Brute force over all 2^(D*D) sign matrices."""
    D = x.shape[1]
    best, arg = None, None
    for s in itertools.product([-1.0, 1.0], repeat=D * D):
        th = torch.tensor(s, dtype=x.dtype).reshape(D, D)
        val = float((p_next * (h * torch.tanh(x) @ th.T)).sum())
        if best is None or val > best:
            best, arg = val, th
    return arg


def emsa_step(x0, y, thetas, h, lam, rho):
    """One Newton step on the augmented Hamiltonian with torch.func (exact for a quadratic)."""
    xs = control_forward(x0, thetas, h)
    ps = costates(xs, thetas, y, h)
    D = thetas.shape[1]
    new = []
    for t in range(thetas.shape[0]):
        def aug(v, t=t):
            th = v.reshape(D, D)
            s, q = torch.tanh(xs[t]), ps[t + 1]
            H = (q * (xs[t] + h * s @ th.T)).sum() - lam / 2 * (th**2).sum()
            gx = q + h * (1 - s**2) * (q @ th)
            return (H - rho / 2 * ((xs[t + 1] - xs[t] - h * s @ th.T) ** 2).sum()
                    - rho / 2 * ((ps[t] - gx) ** 2).sum())
        v0 = thetas[t].reshape(-1).clone()
        step = torch.linalg.solve(torch.func.hessian(aug)(v0), torch.func.grad(aug)(v0))
        new.append((v0 - step).reshape(D, D))
    return torch.stack(new)
'''

ALT_EX3 = '''
def parareal(fine, coarse, x0, n_slices, iterations):
    """Preallocated tensor; the correction F - G of each slice computed first."""
    U = torch.zeros(iterations + 1, n_slices + 1, x0.shape[0], dtype=x0.dtype)
    U[:, 0] = x0
    for n in range(n_slices):
        U[0, n + 1] = coarse(n, U[0, n].clone())
    for k in range(iterations):
        corr = [fine(n, U[k, n].clone()) - coarse(n, U[k, n].clone()) for n in range(n_slices)]
        for n in range(n_slices):
            U[k + 1, n + 1] = coarse(n, U[k + 1, n].clone()) + corr[n]
    return U


def parareal_error_matrix(a, b, n_slices):
    """numpy loops."""
    E = np.zeros((n_slices, n_slices))
    for i in range(n_slices):
        for j in range(i):
            E[i, j] = (a - b) * b ** (i - j - 1)
    return E
'''

ALT_EX4 = '''
def antisym_real_part_interval(gamma, dsigma):
    """numpy."""
    d = dsigma.numpy()
    return np.array([-gamma * d.max(), -gamma * d.min()])


def verlet_inverse(y, z, Ks, bs, h):
    """reversed() and named intermediate."""
    for j in reversed(range(len(Ks))):
        z_prev = z + h * torch.tanh(y @ Ks[j] + bs[j])
        y = y - h * torch.tanh(z_prev @ Ks[j].T + bs[j])
        z = z_prev
    return y, z
'''

ALT_EX5 = '''
def lm_residual_coefficients(k, c):
    """Residuals on the monomials 1, t, t^2, t^3 at t = 0, h = 1."""
    vals = []
    for m in range(4):
        r = 1.0 - (1 - k) * (1.0 if m == 0 else 0.0) - k * (-1.0) ** m - c * (1.0 if m == 1 else 0.0)
        vals.append(r / math.factorial(m))
    return torch.tensor(vals, dtype=torch.float64)


def lm_convergence_order(k):
    """Rotation u' = (-u2, u1) over [0, 2], Euler-started u_1, max-norm error, np.polyfit."""
    T = 2.0
    depths = np.array([64, 128, 256, 512])
    g = lambda u: torch.stack([-u[:, 1], u[:, 0]], dim=1)
    errs = []
    for L in depths:
        h = T / L
        u0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
        us = lm_resnet_forward(u0, u0 + h * g(u0), lambda u: (1 + k) * h * g(u), k, int(L))
        exact = torch.tensor([[math.cos(T), math.sin(T)]], dtype=torch.float64)
        errs.append(float((us[-1] - exact).abs().max()))
    return float(-np.polyfit(np.log(depths), np.log(errs), 1)[0])
'''

ALT_EX6 = '''
def characteristics_solve(u0, v, x, t, depth):
    """In-place updates on a copy."""
    X = x.clone()
    for _ in range(depth):
        X -= (t / depth) * v(X)
    return u0(X)


def upwind_solve(u, vel, dx, t, n_steps):
    """numpy, np.where on the sign of v."""
    dt = t / n_steps
    un, vn = u.numpy().copy(), vel.numpy()
    for _ in range(n_steps):
        left, right = np.roll(un, 1), np.roll(un, -1)
        un = np.where(vn > 0, un - dt / dx * vn * (un - left), un - dt / dx * vn * (right - un))
    return torch.from_numpy(un)
'''

ALTERNATIVES = {  # id -> (grading group, exercise, source with the swapped functions)
    "ex1_preallocated_linspace_scipy_expm": ("alternatives", "ex1", ALT_EX1),
    "ex2_autograd_costates_bruteforce_binary_newton_step": ("alternatives", "ex2", ALT_EX2),
    "ex3_preallocated_parareal_numpy_matrix": ("alternatives", "ex3", ALT_EX3),
    "ex4_numpy_interval_reversed_inverse": ("alternatives", "ex4", ALT_EX4),
    "ex5_monomial_residuals_rotation_euler_start": ("alternatives", "ex5", ALT_EX5),
    "ex6_inplace_characteristics_numpy_upwind": ("alternatives", "ex6", ALT_EX6),
}

# --- plausible bugs: edits of the reference source, and the cells that must catch them -------------

BUGS = {  # id -> (grading group, exercise, [(old, new)], cells that must score 0)
    "ex1_layer_time_shifted": ("A", "ex1", [
        ("z = z + h * f(layer * h, z)", "z = z + h * f((layer + 1) * h, z)")],
        ["ex1_forward_euler"]),
    "ex1_error_limit_missing_half": ("B", "ex1", [
        ("return -(T**2 / 2) * (A @ (A @ (E @ x)))", "return -(T**2) * (A @ (A @ (E @ x)))")],
        ["ex1_error_limit"]),
    "ex1_error_limit_without_flow": ("C", "ex1", [
        ("return -(T**2 / 2) * (A @ (A @ (E @ x)))", "return -(T**2 / 2) * (A @ (A @ x))")],
        ["ex1_error_limit"]),
    "ex2_costates_missing_1_over_N": ("A", "ex2", [
        ("p = -(xs[-1] - y) / N", "p = -(xs[-1] - y)")],
        ["ex2_costates_autograd", "ex2_emsa_step_maximises"]),
    "ex2_costates_theta_transposed": ("B", "ex2", [
        ("p = p + h * sech2 * (p @ thetas[t])", "p = p + h * sech2 * (p @ thetas[t].T)")],
        ["ex2_costates_autograd", "ex2_emsa_step_maximises"]),
    "ex2_binary_argmax_transposed": ("C", "ex2", [
        ("M = p_next.T @ torch.tanh(x)", "M = torch.tanh(x).T @ p_next")],
        ["ex2_binary_bruteforce"]),
    "ex2_emsa_drops_costate_penalty": ("D", "ex2", [
        ("b = h * Q.T @ S + rho * h * dx.T @ S + rho * h * Q.T @ (dp * G)", "b = h * Q.T @ S + rho * h * dx.T @ S"),
        ("A = A + rho * h**2 * A2.reshape(D * D, D * D)", "A = A")],
        ["ex2_emsa_step_maximises"]),
    "ex3_fine_on_new_iterate": ("A", "ex3", [
        ("new.append(coarse(n, new[n]) + F[n] - G[n])", "new.append(coarse(n, new[n]) + fine(n, new[n]) - G[n])")],
        ["ex3_parareal_hand"]),
    "ex3_no_coarse_sweep": ("B", "ex3", [
        ("U.append(coarse(n, U[n]))", "U.append(x0.clone())")],
        ["ex3_parareal_hand"]),
    "ex3_error_matrix_power_off_by_one": ("C", "ex3", [
        ("diff = (i[:, None] - i[None, :] - 1)", "diff = (i[:, None] - i[None, :])")],
        ["ex3_error_matrix"]),
    "ex4_interval_ignores_activation": ("A", "ex4", [
        ("return torch.stack([-gamma * dsigma.max(), -gamma * dsigma.min()])",
         "return torch.stack([-gamma + 0 * dsigma.max(), -gamma + 0 * dsigma.min()])")],
        ["ex4_eig_interval"]),
    "ex4_verlet_uses_old_y": ("B", "ex4", [
        ("        y = y + h * torch.tanh(z @ Ks[j].T + bs[j])\n        z = z - h * torch.tanh(y @ Ks[j] + bs[j])",
         "        y, z = y + h * torch.tanh(z @ Ks[j].T + bs[j]), z - h * torch.tanh(y @ Ks[j] + bs[j])")],
        ["ex4_verlet_forward", "ex4_verlet_inverse", "ex4_volume_preserving"]),
    "ex4_inverse_layers_in_forward_order": ("C", "ex4", [
        ("for j in range(Ks.shape[0] - 1, -1, -1):", "for j in range(Ks.shape[0]):")],
        ["ex4_verlet_inverse"]),
    "ex5_residual_C2_sign": ("A", "ex5", [
        ("(1 - k) / 2", "(1 + k) / 2")],
        ["ex5_coefficients"]),
    "ex5_branch_not_scaled_by_1_plus_k": ("B", "ex5", [
        ("lambda u: (1 + k) * h * torch.stack", "lambda u: h * torch.stack")],
        ["ex5_convergence_order"]),
    "ex5_second_start_value_u0": ("C", "ex5", [
        ("us = lm_resnet_forward(u0, exact(h),", "us = lm_resnet_forward(u0, u0,")],
        ["ex5_convergence_order"]),
    "ex6_characteristics_forward_in_time": ("A", "ex6", [
        ("X = X - h * v(X)", "X = X + h * v(X)")],
        ["ex6_characteristics"]),
    "ex6_upwind_always_backward_difference": ("B", "ex6", [
        ("u = u - nu_p * (u - torch.roll(u, 1)) - nu_m * (torch.roll(u, -1) - u)", "u = u - nu * (u - torch.roll(u, 1))")],
        ["ex6_upwind_shift", "ex6_upwind_first_order"]),
    "ex6_characteristics_unit_time_step": ("C", "ex6", [
        ("h = t / depth", "h = 1.0 / depth")],
        ["ex6_characteristics"]),
}

_GROUP_EXERCISES: dict[str, list[str]] = {}
for _bug, (_grp, _ex, *_rest) in BUGS.items():
    assert _ex not in _GROUP_EXERCISES.setdefault(_grp, []), f"two bugs of {_ex} in grading {_grp}"
    _GROUP_EXERCISES[_grp].append(_ex)
for _alt, (_grp, _ex, _) in ALTERNATIVES.items():
    assert _ex not in _GROUP_EXERCISES.setdefault(_grp, []), f"{_ex} twice in grading {_grp}"
    _GROUP_EXERCISES[_grp].append(_ex)
_BUG_EXERCISES = {grp: [ex for g2, ex, *_ in BUGS.values() if g2 == grp] for grp in _GROUP_EXERCISES}

_graded: dict[str, object] = {}  # grading group -> Graded, shared by the tests of that group


def _grading(group, grade_variant, solution_source):
    if group not in _graded:
        replace = {}
        for grp, ex, code in ALTERNATIVES.values():
            if grp == group:
                gid = SOLUTION_CELL[ex]
                ref = solution_source(PS, gid)
                src = swap_functions(ref, code)
                assert src != ref
                replace[gid] = src
        for grp, ex, edits, _ in BUGS.values():
            if grp == group:
                replace[SOLUTION_CELL[ex]] = edit(solution_source(PS, SOLUTION_CELL[ex]), *edits)
        g = grade_variant(PS, replace)
        assert g.error is None, g.error
        assert sorted(g.max_scores) == sorted(c for cells in CELLS.values() for c in cells), "graded cells changed"
        _graded[group] = g
    return _graded[group]


@pytest.mark.parametrize("variant", list(ALTERNATIVES))
def test_correct_alternative_gets_full_marks(variant, grade_variant, solution_source):
    group, ex, _ = ALTERNATIVES[variant]
    g = _grading(group, grade_variant, solution_source)
    lost = {c: g.messages.get(c) for c in CELLS[ex] if g.scores[c] != g.max_scores[c]}
    assert not lost, f"{variant} lost points: {lost}"


@pytest.mark.parametrize("variant", list(BUGS))
def test_plausible_bug_loses_points(variant, grade_variant, solution_source):
    group, ex, _, must_fail = BUGS[variant]
    g = _grading(group, grade_variant, solution_source)
    assert set(must_fail) <= set(CELLS[ex])
    passed = [c for c in must_fail if g.scores[c] != 0]
    assert not passed, f"{variant} not caught by {passed}"
    assert g.total < g.max_total == 100


@pytest.mark.parametrize("group", sorted(g for g in _BUG_EXERCISES
                                        if _BUG_EXERCISES[g] and len(_GROUP_EXERCISES[g]) < len(CELLS)))
def test_bug_gradings_leave_other_exercises_intact(group, grade_variant, solution_source):
    g = _grading(group, grade_variant, solution_source)
    untouched = [c for ex, cells in CELLS.items() if ex not in _BUG_EXERCISES[group] for c in cells]
    assert untouched, group
    lost = {c: g.messages.get(c) for c in untouched if g.scores[c] != g.max_scores[c]}
    assert not lost, f"grading {group}: reference exercises lost points {lost}"
