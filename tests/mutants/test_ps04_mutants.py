"""ps04 (landscapes) mutation check: correct alternatives get full marks, plausible bugs lose points.

Grading the whole notebook takes several seconds, so variants share gradings: one grading carries at
most one variant per exercise. That is sound because every graded cell of exercise k calls only
exercise k's functions (the figure cells use several, but are ungraded). Each variant still has its
own test and asserts only on its own exercise's cells; the control test checks that exercises left
untouched in a bug grading keep full marks.
"""

from __future__ import annotations

import pytest
from variants import edit, swap_functions

pytestmark = pytest.mark.slow

PS = "ps04"

CELLS = {
    "ex1": ["ex1_h_infinity_hand", "ex1_h_infinity_monte_carlo", "ex1_gram_h_autograd", "ex1_gram_h_converges",
            "ex1_train_one_step", "ex1_train_rate_bound"],
    "ex1m": ["ex1_movement_exponent"],  # calls train_two_layer of ex1: grouped with ex1's variants with care
    "ex2": ["ex2_objective_values", "ex2_grad_autograd", "ex2_saddle_stays", "ex2_noise_escapes"],
    "ex3": ["ex3_objective_values", "ex3_grad_autograd", "ex3_gd_step", "ex3_recovers_from_random_starts"],
    "ex4": ["ex4_hermite_quadrature", "ex4_kernel", "ex4_population_loss"],
    "ex5": ["ex5_markov_dimpulse", "ex5_h2_parseval", "ex5_fit_recovers"],
    "ex6": ["ex6_forward", "ex6_critical_point", "ex6_local_minimum", "ex6_is_spurious"],
}

# --- correct alternatives -----------------------------------------------------------------------

ALT_DU = '''
def gram_h_infinity(X):
    # numpy, entry by entry, the angle from atan2 (no clamping needed)
    Xn = X.numpy()
    n = Xn.shape[0]
    H = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            c = float(Xn[i] @ Xn[j])
            s = math.sqrt(max(0.0, float((Xn[i] @ Xn[i]) * (Xn[j] @ Xn[j]) - c * c)))
            H[i, j] = c * (math.pi - math.atan2(s, c)) / (2 * math.pi)
    return torch.tensor(H)


def gram_h(X, W):
    # loop over hidden units
    H = torch.zeros(X.shape[0], X.shape[0], dtype=X.dtype)
    for w in W:
        s = (X @ w >= 0).to(X.dtype)
        H += torch.outer(s, s)
    return H * (X @ X.T) / W.shape[0]


def train_two_layer(X, y, W0, a, lr, steps):
    # autograd + torch.optim.SGD
    W = W0.clone().requires_grad_(True)
    opt = torch.optim.SGD([W], lr=lr)
    losses = []
    for k in range(steps + 1):
        loss = 0.5 * ((torch.relu(X @ W.T) @ a / W.shape[0] ** 0.5 - y) ** 2).sum()
        losses.append(loss.item())
        if k == steps:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    return torch.tensor(losses, dtype=X.dtype), W.detach()
'''

ALT_MOVEMENT = '''
def movement_vs_width(X, y, widths, lr, steps, generator):
    # the MEAN distance travelled by a hidden unit, slope from numpy.polyfit in log10
    mov = []
    for m in widths:
        W0 = torch.randn(m, X.shape[1], generator=generator, dtype=X.dtype)
        a = torch.where(torch.rand(m, generator=generator) < 0.5, -1.0, 1.0).to(X.dtype)
        _, W = train_two_layer(X, y, W0, a, lr, steps)
        mov.append(float((W - W0).norm(dim=1).mean()))
    return np.array(mov), float(np.polyfit(np.log10(widths), np.log10(mov), 1)[0])
'''

ALT_TENSOR = '''
def tensor_objective(T, U):
    # explicit loop over ordered pairs
    k = U.shape[0]
    tot = torch.zeros((), dtype=U.dtype)
    for i in range(k):
        for j in range(k):
            if i != j:
                tot = tot + torch.einsum("abce,a,b,c,e->", T, U[i], U[i], U[j], U[j])
    return tot


def tensor_objective_grad(T, U):
    # autograd of the objective
    V = U.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(tensor_objective(T, V), V)
    return g


def projected_noisy_gd(T, U0, lr, steps, noise):
    U = U0.detach().clone()
    vals = torch.empty(steps + 1, dtype=U.dtype)
    vals[0] = tensor_objective(T, U)
    for t in range(steps):
        step = U - lr * tensor_objective_grad(T, U) - lr * noise[t]
        U = torch.nn.functional.normalize(step, dim=1)
        vals[t + 1] = tensor_objective(T, U)
    return U, vals
'''

ALT_MC = '''
def mc_objective_grad(X, mask, M_obs, lam, alpha):
    # torch.func.grad of the objective; the root of 0 is kept away from by the mask of zero rows
    m = mask.to(X.dtype)
    Mz = torch.nan_to_num(M_obs) * m
    def f(V):
        R = m * (V @ V.T) - Mz
        nrm = torch.sqrt((V * V).sum(1) + 1e-300)
        return 0.5 * (R * R).sum() + lam * torch.relu(nrm - alpha).pow(4).sum()
    return f(X), torch.func.grad(f)(X)


def mc_gd(mask, M_obs, X0, lr, steps, lam, alpha):
    X = X0.detach().clone()
    for _ in range(steps):
        _, g = mc_objective_grad(X, mask, M_obs, lam, alpha)
        X -= lr * g
    return X
'''

ALT_HERMITE = '''
def relu_hermite(k):
    # closed form through log-gamma
    if k == 0:
        return 1 / math.sqrt(2 * math.pi)
    if k == 1:
        return 0.5
    if k % 2:
        return 0.0
    j = k // 2 - 1  # He_{2j}(0) = (-1)^j (2j)! / (2^j j!)
    logabs = math.lgamma(2 * j + 1) - j * math.log(2) - math.lgamma(j + 1) - 0.5 * math.lgamma(k + 1)
    return (-1) ** j * math.exp(logabs) / math.sqrt(2 * math.pi)


def relu_kernel(rho):
    # angle form: theta = arccos(rho), kappa = (sin theta + (pi - theta) cos theta) / (2 pi)
    theta = torch.atan2(torch.sqrt(torch.clamp(1 - rho * rho, min=0.0)), rho)
    return (torch.sin(theta) + (math.pi - theta) * torch.cos(theta)) / (2 * math.pi)


def population_loss(a, B, a_star, B_star):
    # stack student and teacher: one quadratic form with coefficients (a, -a*)
    P = torch.cat([B, B_star])
    coef = torch.cat([a, -a_star])
    K = relu_kernel((P @ P.T).flatten()).reshape(len(P), len(P))
    return coef @ K @ coef
'''

ALT_LDS = '''
def markov_parameters(a, c, d, n):
    # matrix powers of the companion matrix, in numpy
    ell = len(a)
    A = np.zeros((ell, ell)); A[:-1, 1:] = np.eye(ell - 1); A[-1] = -a.numpy()[::-1]
    s = np.zeros(ell); s[-1] = 1.0
    out = [float(d)]
    for _ in range(n - 1):
        out.append(float(c.numpy() @ s))
        s = A @ s
    return torch.tensor(out, dtype=torch.float64)


def h2_distance_sq(a_hat, c_hat, d_hat, a, c, d):
    # time domain: the sum of squared differences of 3000 Markov parameters (differentiable in torch)
    def mp(aa, cc, dd, n=3000):
        ell = aa.shape[0]
        s = torch.zeros(ell, dtype=torch.float64); s[-1] = 1.0
        s = s + 0 * aa.sum()
        out = [torch.as_tensor(dd, dtype=torch.float64).reshape(1) + 0 * aa.sum()]
        for _ in range(n - 1):
            out.append((cc @ s).reshape(1))
            s = torch.cat([s[1:], -(aa.flip(0) @ s).reshape(1)])
        return torch.cat(out)
    return ((mp(a_hat, c_hat, d_hat) - mp(a, c, d)) ** 2).sum()


def fit_lds_gd(a_true, c_true, d_true, lr, steps):
    # FFT-based risk and torch.optim.SGD on three parameter tensors
    ell = a_true.shape[0]
    a = torch.zeros(ell, dtype=torch.float64, requires_grad=True)
    c = torch.zeros(ell, dtype=torch.float64, requires_grad=True)
    d = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([a, c, d], lr=lr)
    N = 256
    def G(aa, cc, dd):
        num = torch.fft.fft(torch.cat([cc, torch.zeros(N - ell, dtype=torch.float64)]))
        den = torch.fft.fft(torch.cat([aa.flip(0), torch.ones(1, dtype=torch.float64),
                                       torch.zeros(N - ell - 1, dtype=torch.float64)]))
        return num / den + dd
    target = G(a_true, c_true, torch.as_tensor(d_true, dtype=torch.float64))
    risks = []
    for t in range(steps + 1):
        r = ((G(a, c, d) - target).abs() ** 2).mean()
        risks.append(r.item())
        if t == steps:
            break
        opt.zero_grad(); r.backward(); opt.step()
    return a.detach(), c.detach(), d.detach(), torch.tensor(risks, dtype=torch.float64)
'''

ALT_SPURIOUS = '''
def leaky_net(W, b, v, c, X, slope):
    return torch.nn.functional.leaky_relu(X @ W.T + b, slope) @ v + c


def spurious_minimum(X, y, h, slope):
    # sklearn's affine fit carried by ONE unit; the other units sit at w = 0, b = 1 with zero output weight
    from sklearn.linear_model import LinearRegression
    lr = LinearRegression().fit(X.numpy(), y.numpy())
    theta = torch.tensor(lr.coef_, dtype=X.dtype)
    s = float((X @ theta).min())
    W = torch.zeros(h, X.shape[1], dtype=X.dtype); W[0] = theta
    b = torch.ones(h, dtype=X.dtype); b[0] = 1.0 - s
    v = torch.zeros(h, dtype=X.dtype); v[0] = 1.0
    c = torch.tensor(float(lr.intercept_) - (1.0 - s), dtype=X.dtype)
    return W, b, v, c
'''

ALTERNATIVES = {  # id -> (grading group, exercise, {solution grade_id: source})
    "ex1_loops_atan2_autograd_sgd": ("A", "ex1", {"ex1_du_network": ALT_DU}),
    "ex2_loops_autograd_normalize": ("A", "ex2", {"ex2_tensor": ALT_TENSOR}),
    "ex3_func_grad_float_mask": ("A", "ex3", {"ex3_matrix_completion": ALT_MC}),
    "ex4_lgamma_atan2_stacked": ("A", "ex4", {"ex4_hermite": ALT_HERMITE}),
    "ex5_numpy_powers_time_domain_fft_sgd": ("A", "ex5", {"ex5_lds": ALT_LDS}),
    "ex6_functional_one_active_unit": ("A", "ex6", {"ex6_spurious": ALT_SPURIOUS}),
    "ex1_mean_movement_polyfit_log10": ("A", "ex1m", {"ex1_experiment": ALT_MOVEMENT}),
}

# --- plausible bugs: edits of the reference source, and the cells that must catch them -------------
BUGS = {  # id -> (grading group, exercise, solution grade_id, [(old, new)], cells that must score 0)
    # arccos of Gram entries that exceed 1 by rounding: NaN
    "ex1_h_infinity_no_clamp": ("C", "ex1", "ex1_du_network", [
        ("    C = G.clamp(-1.0, 1.0)\n", "    C = G\n")],
        ["ex1_h_infinity_hand"]),
    # forgets the factor x_i^T x_j: only the probability that both units are active
    "ex1_h_infinity_probability_only": ("D", "ex1", "ex1_du_network", [
        ("    return G * (math.pi - torch.arccos(C)) / (2 * math.pi)", "    return (math.pi - torch.arccos(C)) / (2 * math.pi)")],
        ["ex1_h_infinity_hand", "ex1_h_infinity_monte_carlo", "ex1_gram_h_converges"]),
    # loss as a mean (1/(2n) sum) instead of Du et al.'s 1/2 sum, consistently in value and gradient
    "ex1_mean_loss": ("E", "ex1", "ex1_du_network", [
        ("        losses.append(0.5 * (r @ r))", "        losses.append(0.5 * (r @ r) / len(r))"),
        ("        W = W - lr * G", "        W = W - lr * G / len(r)")],
        ["ex1_train_one_step", "ex1_train_rate_bound"]),
    # gram_h without the 1/m
    "ex1_gram_h_missing_one_over_m": ("F", "ex1", "ex1_du_network", [
        ("    return (X @ X.T) * (S @ S.T) / W.shape[0]", "    return (X @ X.T) * (S @ S.T)")],
        ["ex1_gram_h_autograd", "ex1_gram_h_converges"]),
    # measures the total movement ||W - W0||_F: a quantity that does not shrink with the width
    "ex1_movement_frobenius": ("E", "ex1m", "ex1_experiment", [
        ("        mov.append((W - W0).norm(dim=1).max())", "        mov.append((W - W0).norm())")],
        ["ex1_movement_exponent"]),
    # gradient of T(u_i,u_i,u_j,u_j) over ordered pairs: only one of the two roles of u_i counted
    "ex2_grad_factor_two": ("C", "ex2", "ex2_tensor", [
        ("    return 4 * (off[:, :, None] * V).sum(dim=1)", "    return 2 * (off[:, :, None] * V).sum(dim=1)")],
        ["ex2_grad_autograd"]),
    # noisy gradient descent without the projection back to the sphere
    "ex2_no_projection": ("D", "ex2", "ex2_tensor", [
        ("        U = U / U.norm(dim=1, keepdim=True)\n", "")],
        ["ex2_saddle_stays", "ex2_noise_escapes"]),
    # the unobserved garbage of M_obs enters the residual
    "ex3_unmasked_observations": ("C", "ex3", "ex3_matrix_completion", [
        ("    R = torch.where(mask, X @ X.T - M_obs, torch.zeros((), dtype=X.dtype))",
         "    R = torch.where(mask, X @ X.T, torch.zeros((), dtype=X.dtype)) - M_obs")],
        ["ex3_objective_values", "ex3_grad_autograd", "ex3_gd_step", "ex3_recovers_from_random_starts"]),
    # d/dX of 1/2 ||P(XX^T - M)||^2 taken as R X instead of (R + R^T) X
    "ex3_grad_missing_symmetric_half": ("D", "ex3", "ex3_matrix_completion", [
        ("    return f, (R + R.T) @ X + scale[:, None] * X", "    return f, R @ X + scale[:, None] * X")],
        ["ex3_grad_autograd", "ex3_gd_step"]),
    # regularizer gradient without the 1/||x_i|| of the chain rule
    "ex3_reg_grad_missing_norm": ("E", "ex3", "ex3_matrix_completion", [
        ("4 * lam * exc**3 / torch.where(nrm > 0, nrm, 1.0)", "4 * lam * exc**3")],
        ["ex3_grad_autograd"]),
    # Hermite coefficient against He_k instead of the normalized h_k = He_k / sqrt(k!)
    "ex4_hermite_unnormalized": ("C", "ex4", "ex4_hermite", [
        ("        val *= -(j - 1) / math.sqrt((j + 1) * (j + 2))", "        val *= -(j - 1)"),
        ("    val = 1.0 / math.sqrt(4 * math.pi)", "    val = 1.0 / math.sqrt(2 * math.pi)")],
        ["ex4_hermite_quadrature"]),
    # Cho & Saul's arc-cosine kernel k_1 without the 1/2
    "ex4_kernel_cho_saul_k1": ("D", "ex4", "ex4_hermite", [
        ("    return (torch.sqrt(1 - c * c) + (math.pi - torch.arccos(c)) * c) / (2 * math.pi)",
         "    return (torch.sqrt(1 - c * c) + (math.pi - torch.arccos(c)) * c) / math.pi")],
        ["ex4_kernel", "ex4_population_loss"]),
    # Markov parameters start at CB (D forgotten)
    "ex5_markov_missing_d": ("C", "ex5", "ex5_lds", [
        ("    out = [torch.as_tensor(d, dtype=a.dtype).reshape(())]\n", "    out = []\n"),
         ("    for _ in range(n - 1):\n        out.append(c @ s)", "    for _ in range(n):\n        out.append(c @ s)")],
        ["ex5_markov_dimpulse"]),
    # denominator coefficients in the wrong order (z^l + a_l z^{l-1} + ... + a_1)
    "ex5_denominator_reversed": ("D", "ex5", "ex5_lds", [
        ("        den = z**ell + pw.to(torch.complex128) @ torch.flip(aa, [0]).to(torch.complex128)",
         "        den = z**ell + pw.to(torch.complex128) @ aa.to(torch.complex128)")],
        ["ex5_h2_parseval", "ex5_fit_recovers"]),
    # least squares without an intercept, although the network has biases
    "ex6_lstsq_without_intercept": ("C", "ex6", "ex6_spurious", [
        ("    A = torch.cat([X, torch.ones(n, 1, dtype=X.dtype)], dim=1)",
         "    A = torch.cat([X, torch.zeros(n, 1, dtype=X.dtype)], dim=1)")],
        ["ex6_critical_point", "ex6_is_spurious"]),
    # no shift: the units are not all in their linear piece on the data
    "ex6_no_shift": ("D", "ex6", "ex6_spurious", [
        ("    shift = (X @ theta).abs().max() + beta.abs() + 1.0", "    shift = 0.0 * beta")],
        ["ex6_critical_point"]),
    # leaky ReLU with the slope on the wrong side
    "ex6_slope_on_positive_side": ("E", "ex6", "ex6_spurious", [
        ("    return torch.where(Z > 0, Z, slope * Z) @ v + c", "    return torch.where(Z > 0, slope * Z, Z) @ v + c")],
        ["ex6_forward"]),
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


def _variant_source(solution_source, gid, new_code):
    ref = solution_source(PS, gid)
    src = swap_functions(ref, new_code)
    assert src != ref
    return src


def _grading(group, grade_variant, solution_source):
    if group not in _graded:
        replace = {gid: _variant_source(solution_source, gid, code)
                   for grp, _, cells in ALTERNATIVES.values() if grp == group for gid, code in cells.items()}
        replace.update({gid: edit(solution_source(PS, gid), *edits)
                        for grp, _, gid, edits, _ in BUGS.values() if grp == group})
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
    group, ex, _, _, must_fail = BUGS[variant]
    g = _grading(group, grade_variant, solution_source)
    assert set(must_fail) <= set(CELLS[ex])
    passed = [c for c in must_fail if g.scores[c] != 0]
    assert not passed, f"{variant} not caught by {passed}"
    assert g.total < g.max_total == 100


@pytest.mark.parametrize("group", sorted(g for g in _BUG_EXERCISES if _BUG_EXERCISES[g]))
def test_bug_gradings_leave_other_exercises_intact(group, grade_variant, solution_source):
    g = _grading(group, grade_variant, solution_source)
    untouched = [c for ex, cells in CELLS.items() if ex not in _BUG_EXERCISES[group] for c in cells]
    assert untouched, group
    lost = {c: g.messages.get(c) for c in untouched if g.scores[c] != g.max_scores[c]}
    assert not lost, f"grading {group}: reference exercises lost points {lost}"
