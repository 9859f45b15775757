"""ps05 (multilayer convolutional sparse coding) mutation check: correct alternatives get full marks,
plausible bugs lose exactly the cells meant to catch them.

Variants share gradings (one grading of the whole notebook takes several seconds): a grading carries at most one
variant per *unit* (a solution cell and the graded cells that call it). That is sound because every graded cell
calls only the functions of its own unit (``soft_threshold`` of unit ex1a is used by later units, and no variant
changes it). All correct alternatives share one grading; each bug grading also checks that the units it leaves
untouched keep full marks.
"""

from __future__ import annotations

import pytest
from variants import edit, swap_functions

pytestmark = pytest.mark.slow

PS = "ps05"

# unit -> (solution cell, graded cells)
UNITS = {
    "ex1a": ("ex1_ista_fista", ["ex1_ista_lasso", "ex1_fista_iterates", "ex1_rate_bounds"]),
    "ex1b": ("ex1_duality_gap_sol", ["ex1_duality_gap"]),
    "ex1c": ("ex1_dictionary_learning", ["ex1_dictionary_recovery"]),
    "ex2a": ("ex2_conv_dict", ["ex2_conv_dictionary", "ex2_mutual_coherence"]),
    "ex2b": ("ex2_conv_coherence_sol", ["ex2_conv_coherence"]),
    "ex2c": ("ex2_stripe_norm_sol", ["ex2_stripe_norm"]),
    "ex3a": ("ex3_layered_thresholding_sol", ["ex3_cnn_forward"]),
    "ex3b": ("ex3_threshold_interval_sol", ["ex3_threshold_interval"]),
    "ex3c": ("ex3_critical_contrast_sol", ["ex3_critical_contrast"]),
    "ex4a": ("ex4_lbp_sol", ["ex4_lbp_lasso", "ex4_lbp_high_contrast"]),
    "ex4b": ("ex4_res_block_sol", ["ex4_res_block"]),
    "ex5a": ("ex5_deconv_sol", ["ex5_deconv_dense_lasso"]),
    "ex5b": ("ex5_msd_sol", ["ex5_msd_dilations", "ex5_msd_param_count", "ex5_msd_receptive_field"]),
}
ALL_CELLS = sorted(c for _, cells in UNITS.values() for c in cells)

# ------------------------------------------------------------------ correct alternatives (one shared grading)
ALTERNATIVES = {
    # numpy ISTA with L from eigvalsh, FISTA with precomputed t_k and the gradient written as D^T (x - D y)
    "ex1a_numpy_ista_eigvalsh_and_precomputed_momentum": ("ex1a", '''
def soft_threshold(v, t):
    return v - torch.clamp(v, -t, t)


def ista(D, x, lam, steps, gamma0=None):
    Dn, xn = D.numpy(), x.numpy()
    L = np.linalg.eigvalsh(Dn.T @ Dn)[-1]
    g = np.zeros(Dn.shape[1]) if gamma0 is None else gamma0.numpy().copy()
    out = [g]
    for _ in range(steps):
        v = g - Dn.T @ (Dn @ g - xn) / L
        g = np.sign(v) * np.maximum(np.abs(v) - lam / L, 0.0)
        out.append(g)
    return torch.tensor(np.array(out))


def fista(D, x, lam, steps):
    L = torch.linalg.svdvals(D)[0] ** 2
    ts = [1.0]
    for _ in range(steps):
        ts.append((1 + math.sqrt(1 + 4 * ts[-1] ** 2)) / 2)
    out = [torch.zeros(D.shape[1], dtype=D.dtype)]
    y = out[0]
    for k in range(steps):
        out.append(soft_threshold(y + D.T @ (x - D @ y) / L, lam / L))
        y = out[-1] + (ts[k] - 1) / ts[k + 1] * (out[-1] - out[-2])
    return torch.stack(out)
'''),
    # Python floats: compare the interior stationary point with both ends of the feasible interval
    "ex1b_candidate_points_in_python_floats": ("ex1b", '''
def lasso_duality_gap(D, x, lam, gamma):
    r = x - D @ gamma
    rr = float(r @ r)
    primal = 0.5 * rr + lam * float(gamma.abs().sum())
    if rr == 0.0:
        return primal
    cap = lam / float((D.T @ r).abs().max())
    xr = float(x @ r)
    cands = [-cap, cap] + ([xr / rr] if abs(xr / rr) <= cap else [])
    return primal - max(xr * s - 0.5 * s * s * rr for s in cands)
'''),
    # the dictionary as the matrix of torch's circular correlation; coherence from the upper triangle
    "ex2a_conv1d_of_identity_and_triu_coherence": ("ex2a", '''
def conv_dictionary(filters, N):
    m, c, n = filters.shape
    basis = torch.eye(c * N, dtype=filters.dtype).reshape(c * N, c, N)
    return F.conv1d(F.pad(basis, (0, n - 1), mode="circular"), filters).reshape(c * N, m * N)


def mutual_coherence(D):
    Dn = D / torch.linalg.vector_norm(D, dim=0, keepdim=True)
    return (Dn.T @ Dn).abs().triu(1).max()
'''),
    # the obvious route: the smallest admissible N, then the dense coherence
    "ex2b_dense_dictionary_with_smallest_N": ("ex2b", '''
def conv_coherence(filters):
    n = filters.shape[-1]
    return mutual_coherence(conv_dictionary(filters, 2 * n - 1))
'''),
    # circular distance between atom positions, Python loops
    "ex2c_circular_distance_loops": ("ex2c", '''
def stripe_norm(Gamma, n):
    m, N = Gamma.shape
    nz = [i for i in range(N) for j in range(m) if Gamma[j, i] != 0]
    best = 0
    for i in range(N):
        best = max(best, sum(1 for a in nz if min((a - i) % N, (i - a) % N) <= n - 1))
    return best
'''),
    # column-vector convention and clamp, a tuple of estimates
    "ex3a_transposed_products_tuple": ("ex3a", '''
def layered_thresholding(X, dictionaries, biases):
    out = []
    for D, b in zip(dictionaries, biases):
        prev = out[-1] if out else X
        out.append(torch.clamp((D.T @ prev.T).T + b, min=0.0))
    return tuple(out)
'''),
    "ex3b_numpy_array": ("ex3b", '''
def threshold_interval(mu, k, gmin, gmax):
    return np.array([k * mu * gmax, gmin - (k - 1) * mu * gmax])
'''),
    # another measurement design: the exact success interval of every trial, then the crossing on a log grid
    "ex3c_exact_success_intervals": ("ex3c", '''
def critical_contrast(D, s, generator):
    T = 4000
    M = D.shape[1]
    gram = D.T @ D
    sup = torch.rand(T, M, generator=generator).argsort(dim=1)[:, :s]
    u = torch.rand(T, s, generator=generator, dtype=D.dtype)
    A = gram[sup].sum(dim=1)
    B = (gram[sup] * u[:, :, None]).sum(dim=1)
    mask = torch.zeros(T, M, dtype=torch.bool).scatter_(1, sup, True)
    a = torch.gather(A, 1, sup)[:, :, None] - A[:, None, :]
    b = torch.gather(B, 1, sup)[:, :, None] - B[:, None, :]
    off = ~mask[:, None, :]
    lo = torch.where(off & (b > 0), -a / b, torch.full_like(a, -math.inf))
    lo = torch.where(off & (b == 0) & (a <= 0), torch.full_like(a, math.inf), lo).amax(dim=(1, 2))
    hi = torch.where(off & (b < 0), a / (-b), torch.full_like(a, math.inf)).amin(dim=(1, 2))
    r = torch.logspace(-3, 3, 3000, dtype=D.dtype)
    rates = ((r[:, None] > lo) & (r[:, None] < hi)).to(D.dtype).mean(dim=1)
    return 1.0 + float(r[int(torch.nonzero(rates <= 0.5)[0])])
'''),
    # the (k - 1)/(k + 2) momentum variant of FISTA, L from eigvalsh
    "ex4a_nesterov_k_over_k_plus_3_momentum": ("ex4a", '''
def layered_basis_pursuit(X, dictionaries, lams, steps):
    out = []
    prev = X
    for D, lam in zip(dictionaries, lams):
        L = float(torch.linalg.eigvalsh(D.T @ D)[-1])
        z = torch.zeros(prev.shape[0], D.shape[1], dtype=X.dtype)
        z_old = z
        for k in range(1, steps + 1):
            y = z + (k - 2) / (k + 1) * (z - z_old) if k > 1 else z
            v = y - (y @ D.T - prev) @ D / L
            z_old, z = z, torch.sign(v) * torch.relu(v.abs() - lam / L)
        out.append(z)
        prev = z
    return out
'''),
    "ex4b_svdvals_expanded_product": ("ex4b", '''
def res_csc_block(D, lam):
    L = float(torch.linalg.svdvals(D)[0]) ** 2
    return (D.T - D.T @ D) / L, -lam / L * torch.ones(D.shape[1], dtype=D.dtype)
'''),
    # adjoint by torch.autograd instead of conv_transpose2d, longer power iteration with a 5% margin
    "ex5a_autograd_adjoint": ("ex5a", '''
def csc_deconvolution(x, filters, lam, steps):
    m, n, _ = filters.shape
    H, W = x.shape
    shape = (m, H + n - 1, W + n - 1)

    def A(z):
        return F.conv2d(z[None], filters[None])[0, 0]

    def At(r):
        z = torch.zeros(shape, dtype=x.dtype, requires_grad=True)
        (g,) = torch.autograd.grad(A(z), z, r)
        return g

    v = torch.ones(shape, dtype=x.dtype)
    for _ in range(200):
        v = At(A(v))
        v = v / v.norm()
    L = 1.05 * float(At(A(v)).norm())
    z = torch.zeros(shape, dtype=x.dtype)
    y, t = z, 1.0
    Atx = At(x)
    for _ in range(steps):
        u = y - (At(A(y)) - Atx) / L
        zn = torch.sign(u) * torch.clamp(u.abs() - lam / L, min=0.0)
        tn = (1 + math.sqrt(1 + 4 * t * t)) / 2
        y = zn + (t - 1) / tn * (zn - z)
        z, t = zn, tn
    return z
'''),
    # loops instead of closed forms
    "ex5b_loops": ("ex5b", '''
def msd_dilations(depth, width):
    flat = [k % 10 + 1 for k in range(depth * width)]
    return [flat[i * width:(i + 1) * width] for i in range(depth)]


def msd_param_count(depth, width, c_in, c_out):
    total = 0
    for i in range(depth):
        total += width * (9 * (c_in + i * width) + 1)
    return total + c_out * (c_in + depth * width + 1)


def msd_receptive_field(depth, width):
    radius = 0
    for row in msd_dilations(depth, width):
        radius += max(row)
    return 2 * radius + 1
'''),
}

# ------------------------------------------------------------------ plausible bugs
# id -> (grading, unit, [(old, new)], cells that must score 0)
BUGS = {
    "ex1a_step_from_frobenius_norm": ("A", "ex1a", [
        ("    L = torch.linalg.matrix_norm(D, 2) ** 2\n    g = torch.zeros(D.shape[1], dtype=D.dtype) if gamma0",
         "    L = torch.linalg.matrix_norm(D, 'fro') ** 2\n    g = torch.zeros(D.shape[1], dtype=D.dtype) if gamma0"),
        ("    L = torch.linalg.matrix_norm(D, 2) ** 2\n    g = torch.zeros(D.shape[1], dtype=D.dtype)\n    y, t",
         "    L = torch.linalg.matrix_norm(D, 'fro') ** 2\n    g = torch.zeros(D.shape[1], dtype=D.dtype)\n    y, t")],
        ["ex1_ista_lasso", "ex1_fista_iterates"]),
    "ex1a_fista_without_momentum": ("B", "ex1a", [
        ("y = g_new + (t - 1) / t_new * (g_new - g)", "y = g_new")],
        ["ex1_fista_iterates", "ex1_rate_bounds"]),
    "ex1a_ista_threshold_not_divided_by_L": ("C", "ex1a", [
        ("g = soft_threshold(g - D.T @ (D @ g - x) / L, lam / L)", "g = soft_threshold(g - D.T @ (D @ g - x) / L, lam)")],
        ["ex1_ista_lasso"]),
    "ex1b_unscaled_residual_as_dual_point": ("A", "ex1b", [
        ("s = torch.clamp((x @ r) / rr, -cap, cap)", "s = torch.ones((), dtype=D.dtype)")],
        ["ex1_duality_gap"]),
    "ex1b_standard_scaling_not_the_best_multiple": ("B", "ex1b", [
        ("s = torch.clamp((x @ r) / rr, -cap, cap)", "s = cap")],
        ["ex1_duality_gap"]),
    "ex1c_atoms_not_renormalised": ("B", "ex1c", [
        ("        D = torch.linalg.solve(A, G.T @ X).T\n        D = D / D.norm(dim=0).clamp_min(1e-12)\n",
         "        D = torch.linalg.solve(A, G.T @ X).T\n")],
        ["ex1_dictionary_recovery"]),
    "ex2a_coherence_without_normalisation": ("A", "ex2a", [
        ("Dn = D / D.norm(dim=0)", "Dn = D")],
        ["ex2_mutual_coherence"]),
    "ex2a_position_major_columns": ("C", "ex2a", [
        ("D[rows.reshape(-1), j * N + i] += filters[j].reshape(-1)", "D[rows.reshape(-1), i * m + j] += filters[j].reshape(-1)")],
        ["ex2_conv_dictionary"]),
    "ex2b_one_sided_shifts": ("B", "ex2b", [
        ("corr = F.conv1d(F.pad(f, (n - 1, n - 1)), f)", "corr = F.conv1d(F.pad(f, (0, n - 1)), f)")],
        ["ex2_conv_coherence"]),
    "ex2c_no_wrap_around": ("A", "ex2c", [
        ("window = torch.cat([counts[-(n - 1):], counts, counts[: n - 1]]) if n > 1 else counts",
         "window = torch.cat([torch.zeros(n - 1, dtype=counts.dtype), counts, torch.zeros(n - 1, dtype=counts.dtype)])")],
        ["ex2_stripe_norm"]),
    "ex2c_window_of_n_positions": ("B", "ex2c", [
        ("sums = window.unfold(0, 2 * n - 1, 1).sum(dim=1)", "sums = window.unfold(0, n, 1).sum(dim=1)")],
        ["ex2_stripe_norm"]),
    "ex3a_bias_subtracted": ("A", "ex3a", [
        ("G = torch.relu(G @ D + b)", "G = torch.relu(G @ D - b)")],
        ["ex3_cnn_forward"]),
    "ex3b_hi_off_by_one": ("A", "ex3b", [
        ("gmin - (k - 1) * mu * gmax", "gmin - k * mu * gmax")],
        ["ex3_threshold_interval"]),
    "ex3b_lo_counts_k_minus_one_atoms": ("C", "ex3b", [
        ("return k * mu * gmax, ", "return (k - 1) * mu * gmax, ")],
        ["ex3_threshold_interval"]),
    "ex3c_fixed_bias_instead_of_best_threshold": ("B", "ex3c", [
        ("return float((on > off).to(D.dtype).mean())", "return float(((on > 0.5) & (off <= 0.5)).to(D.dtype).mean())")],
        ["ex3_critical_contrast"]),
    "ex4a_nonnegative_lasso": ("A", "ex4a", [
        ("Zn = soft_threshold(Y - (Y @ gram - target) / L, lam / L)", "Zn = torch.relu(Y - (Y @ gram - target) / L - lam / L)")],
        ["ex4_lbp_lasso"]),
    "ex4a_every_layer_codes_the_input": ("B", "ex4a", [
        ("target = Gprev @ D", "target = X @ D")],
        ["ex4_lbp_lasso"]),
    "ex4b_residual_branch_without_1_over_L": ("A", "ex4b", [
        ("W = D.T @ (torch.eye(M, dtype=D.dtype) - D) / L", "W = D.T @ (torch.eye(M, dtype=D.dtype) - D)")],
        ["ex4_res_block"]),
    "ex5a_adjoint_with_flipped_filters": ("A", "ex5a", [
        ("return F.conv_transpose2d(r[None, None], w)[0]", "return F.conv_transpose2d(r[None, None], w.flip(-1, -2))[0]")],
        ["ex5_deconv_dense_lasso"]),
    "ex5b_parameters_without_biases": ("A", "ex5b", [
        ("depth * (depth - 1) // 2) + depth * width", "depth * (depth - 1) // 2)")],
        ["ex5_msd_param_count"]),
    "ex5b_receptive_field_sums_all_channels": ("B", "ex5b", [
        ("sum(max(row) for row in", "sum(sum(row) for row in")],
        ["ex5_msd_receptive_field"]),
}

_seen: dict[str, set] = {}
for _name, (_grp, _unit, _, _cells) in BUGS.items():
    assert _unit not in _seen.setdefault(_grp, set()), f"two bugs of {_unit} in grading {_grp}"
    assert set(_cells) <= set(UNITS[_unit][1]), _name
    _seen[_grp].add(_unit)

_graded: dict[str, object] = {}


def _grading(group, grade_variant, solution_source):
    if group not in _graded:
        if group == "alternatives":
            replace = {}
            for unit, code in ALTERNATIVES.values():
                cell = UNITS[unit][0]
                replace[cell] = swap_functions(replace.get(cell, solution_source(PS, cell)), code)
        else:
            replace = {UNITS[unit][0]: edit(solution_source(PS, UNITS[unit][0]), *pairs)
                       for grp, unit, pairs, _ in BUGS.values() if grp == group}
        g = grade_variant(PS, replace)
        assert g.error is None, g.error
        assert sorted(g.max_scores) == ALL_CELLS, "graded cells changed"
        _graded[group] = g
    return _graded[group]


@pytest.mark.parametrize("name", list(ALTERNATIVES))
def test_correct_alternative_gets_full_marks(name, grade_variant, solution_source):
    unit, _ = ALTERNATIVES[name]
    g = _grading("alternatives", grade_variant, solution_source)
    lost = {c: g.messages.get(c) for c in UNITS[unit][1] if g.scores[c] != g.max_scores[c]}
    assert not lost, f"{name} lost points: {lost}"


@pytest.mark.parametrize("name", list(BUGS))
def test_plausible_bug_loses_points(name, grade_variant, solution_source):
    group, unit, _, must_fail = BUGS[name]
    g = _grading(group, grade_variant, solution_source)
    kept = [c for c in must_fail if g.scores[c] != 0]
    assert not kept, f"{name} not caught by {kept}"
    others = [c for c in UNITS[unit][1] if c not in must_fail]
    lost = {c: g.messages.get(c) for c in others if g.scores[c] != g.max_scores[c]}
    assert not lost, f"{name} also lost {lost} (expected to lose exactly {must_fail})"
    assert g.total < 100


@pytest.mark.parametrize("group", sorted(_seen))
def test_bug_gradings_leave_other_units_intact(group, grade_variant, solution_source):
    g = _grading(group, grade_variant, solution_source)
    untouched = [c for unit, (_, cells) in UNITS.items() if unit not in _seen[group] for c in cells]
    lost = {c: g.messages.get(c) for c in untouched if g.scores[c] != g.max_scores[c]}
    assert not lost, f"grading {group}: units without a bug lost points {lost}"
