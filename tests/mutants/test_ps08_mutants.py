"""ps08 (NTK) mutation check: correct alternatives get full marks, plausible bugs lose points.

Grading the whole notebook takes ~15 s (its figure cells run too), so variants share gradings.
The graded cells are split into units; each unit lists the solution cells its graded cells call
(directly, or through the reference implementation of another function: `critical_lr` calls
`empirical_ntk`, `linearization_gap` calls `empirical_ntk` and `linearized_predictions`). One grading
carries at most one variant per unit, no alternative or bug of a unit whose other dependencies are
bugged in the same grading, and the control test checks that the units untouched by a grading's bugs
keep full marks. Each variant has its own test and asserts only on its own unit's cells.
"""

from __future__ import annotations

import pytest
from variants import edit

pytestmark = pytest.mark.slow

PS = "ps08"

UNITS = {  # unit -> (graded cells, solution cells they depend on)
    "ex1a": (["ex1_nngp_closed_form", "ex1_nngp_monte_carlo"], {"ex1_relu_nngp"}),
    "ex1": (["ex1_shape_and_diagonal", "ex1_depth1_closed_form", "ex1_deep_recursion", "ex1_wide_network_limit"],
            {"ex1_relu_ntk"}),
    "ex2": (["ex2_ntkmlp_layers_init", "ex2_ntkmlp_forward", "ex2_empirical_ntk_autograd", "ex2_empirical_ntk_linear",
             "ex2_empirical_ntk_wide_limit"], {"ex2_ntkmlp", "ex2_empirical_ntk"}),
    "ex2c": (["ex2_critical_lr_values", "ex2_parameterisation_scaling"],
             {"ex2_critical_lr", "ex2_empirical_ntk", "ex2_ntkmlp"}),
    "ex3": (["ex3_zero_and_one_step", "ex3_train_outputs", "ex3_test_outputs", "ex3_singular_kernel"],
            {"ex3_linearized_predictions"}),
    "ex3b": (["ex3_linearization_gap_values", "ex3_max_gap_shrinks_with_width"],
             {"ex3_linearization_gap", "ex2_empirical_ntk", "ex3_linearized_predictions"}),
    "ex4": (["ex4_gram_values", "ex4_bound_values", "ex4_residual_curve", "ex4_true_vs_random_labels",
             "ex4_bound_vs_corruption"], {"ex4_arora_gram", "ex4_generalization_bound", "ex4_predicted_residual_curve"}),
    "ex5": (["ex5_kernel_ridge", "ex5_fit_losses", "ex5_fit_parameters", "ex5_label_noise"],
            {"ex5_kernel_ridge_predict", "ex5_fit_distance_to_init"}),
}
CELLS = {unit: cells for unit, (cells, _) in UNITS.items()}

# --- correct alternatives: (solution cell, full source) ----------------------------------------

ALT_RELU_NTK = '''
def relu_ntk(X1, X2, depth, weight_var=2.0, bias_var=0.0):
    """Pair by pair, in Python floats (loops instead of matrices)."""
    d = X1.shape[1]
    out = torch.empty(X1.shape[0], X2.shape[0], dtype=X1.dtype)
    for i in range(X1.shape[0]):
        for j in range(X2.shape[0]):
            x, z = X1[i], X2[j]
            s = weight_var * float(x @ z) / d + bias_var
            a = weight_var * float(x @ x) / d + bias_var
            b = weight_var * float(z @ z) / d + bias_var
            th = s
            for _ in range(depth):
                c = min(1.0, max(-1.0, s / math.sqrt(a * b)))
                t = math.acos(c)
                th = th * weight_var * (math.pi - t) / (2 * math.pi)
                s = weight_var * math.sqrt(a * b) * (math.sin(t) + (math.pi - t) * c) / (2 * math.pi) + bias_var
                th = th + s
                a, b = weight_var * a / 2 + bias_var, weight_var * b / 2 + bias_var
            out[i, j] = th
    return out
'''

ALT_NTKMLP = '''
class NTKMLP(torch.nn.Module):
    """Draws all biases first (last layer first), then the weights; forward through F.linear."""

    def __init__(self, in_dim, width, depth, weight_var=2.0, bias_var=0.0, generator=None, dtype=torch.float64):
        super().__init__()
        self.wv, self.bv = weight_var, bias_var
        dims = [in_dim] + [width] * depth + [1]
        layers = [torch.nn.Linear(i, o, dtype=dtype) for i, o in zip(dims[:-1], dims[1:])]
        with torch.no_grad():
            for layer in reversed(layers):
                torch.nn.init.normal_(layer.bias, generator=generator)
            for layer in layers:
                layer.weight.normal_(generator=generator)
        self.layers = torch.nn.ModuleList(layers)

    def forward(self, x):
        for k, layer in enumerate(self.layers):
            x = torch.nn.functional.linear(x, layer.weight * math.sqrt(self.wv / layer.in_features),
                                           layer.bias * math.sqrt(self.bv))
            if k + 1 < len(self.layers):
                x = torch.nn.functional.relu(x)
        return x.squeeze(-1)
'''

ALT_EMPIRICAL_NTK = '''
def empirical_ntk(model, X1, X2):
    """Per-sample gradients with vmap(grad) and an einsum, instead of jacrev."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def f(p, x):
        return torch.func.functional_call(model, p, (x[None],)).reshape(())

    g1 = torch.func.vmap(torch.func.grad(f), (None, 0))(params, X1)
    g2 = torch.func.vmap(torch.func.grad(f), (None, 0))(params, X2)
    return sum(torch.einsum("ip,jp->ij", g1[k].flatten(1), g2[k].flatten(1)) for k in params)
'''

ALT_LINEARIZED = '''
def linearized_predictions(ntk_train, ntk_test, f0_train, f0_test, y, lr, steps):
    """Iterates the linear gradient-descent dynamics instead of the eigen-decomposition closed form."""
    f, ft = f0_train.clone(), f0_test.clone()
    for _ in range(steps):
        r = f - y
        f, ft = f - lr * ntk_train @ r, ft - lr * ntk_test @ r
    return f, ft
'''

ALT_KERNEL_RIDGE = '''
def kernel_ridge_predict(K_train, K_test, y, ridge):
    """Least squares instead of solve."""
    A = K_train + ridge * torch.eye(len(y), dtype=K_train.dtype)
    return K_test @ torch.linalg.lstsq(A, y[:, None]).solution[:, 0]
'''

ALT_FIT = '''
def fit_distance_to_init(model, X, y, ridge, lr, steps):
    """torch.optim.SGD and backward(); the loss history is kept in float32 (only recorded, never used)."""
    anchor = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    out = []
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.5 * torch.nn.functional.mse_loss(model(X).reshape(-1), y, reduction="sum")
        loss = loss + 0.5 * ridge * sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor))
        loss.backward()
        opt.step()
        out.append(loss.item())
    return torch.tensor(out, dtype=torch.float32)
'''

ALT_ARORA = {
    "ex4_arora_gram": '''
def arora_gram(X):
    """numpy, with the angle from arctan2 of the cross and dot products."""
    Z = X.numpy()
    G = Z @ Z.T
    cross = np.sqrt(np.clip((Z**2).sum(1)[:, None] * (Z**2).sum(1)[None, :] - G**2, 0, None))
    return torch.tensor(G * (np.pi - np.arctan2(cross, G)) / (2 * np.pi))
''',
    "ex4_generalization_bound": '''
def generalization_bound(H, y):
    """Cholesky: y^T H^-1 y = |L^-1 y|^2."""
    z = torch.linalg.solve_triangular(torch.linalg.cholesky(H), y[:, None], upper=False)
    return torch.sqrt(2 * (z**2).sum() / len(y))
''',
    "ex4_predicted_residual_curve": '''
def predicted_residual_curve(H, y, lr, steps):
    """Iterates u(k+1) = u(k) + lr H (y - u(k)) instead of the eigen-decomposition."""
    r, out = y.clone(), []
    for _ in range(steps + 1):
        out.append(r.norm())
        r = r - lr * H @ r
    return torch.stack(out)
''',
}

ALT_RELU_NTK_OUTER_SQRT = '''
def relu_ntk(X1, X2, depth, weight_var=2.0, bias_var=0.0):
    """Normalises by torch.outer of square roots: cos(e1, -e1) comes out as -0.9999999999999998."""
    d = X1.shape[1]
    s = weight_var * X1 @ X2.T / d + bias_var
    q1 = weight_var * (X1**2).sum(1) / d + bias_var
    q2 = weight_var * (X2**2).sum(1) / d + bias_var
    th = s
    for _ in range(depth):
        nrm = torch.outer(q1.sqrt(), q2.sqrt())
        t = torch.arccos((s / nrm).clamp(-1, 1))
        th = th * weight_var * (math.pi - t) / (2 * math.pi)
        s = weight_var * nrm * (torch.sin(t) + (math.pi - t) * torch.cos(t)) / (2 * math.pi) + bias_var
        th = th + s
        q1, q2 = weight_var * q1 / 2 + bias_var, weight_var * q2 / 2 + bias_var
    return th
'''

ALT_EMPIRICAL_NTK_LOOP = '''
def empirical_ntk(model, X1, X2):
    """One torch.autograd.grad call per input, gradients flattened and concatenated."""
    params = [p for p in model.parameters()]

    def jac(X):
        rows = []
        for x in X:
            grads = torch.autograd.grad(model(x[None]).sum(), params)
            rows.append(torch.cat([g.reshape(-1) for g in grads]))
        return torch.stack(rows)

    return (jac(X1) @ jac(X2).T).detach()
'''

ALT_KERNEL_RIDGE_CHOLESKY = '''
def kernel_ridge_predict(K_train, K_test, y, ridge):
    """scipy's symmetric solver on numpy copies."""
    import scipy.linalg
    A = K_train.numpy() + ridge * np.eye(len(y))
    return torch.tensor(K_test.numpy() @ scipy.linalg.solve(A, y.numpy(), assume_a="sym"))
'''

ALT_LINEARIZED_PINV = '''
def linearized_predictions(ntk_train, ntk_test, f0_train, f0_test, y, lr, steps):
    """Matrix powers and a pseudo-inverse instead of an eigen-decomposition."""
    n = ntk_train.shape[0]
    decay = torch.linalg.matrix_power(torch.eye(n, dtype=ntk_train.dtype) - lr * ntk_train, steps)
    r0 = f0_train - y
    f_train = y + decay @ r0
    f_test = f0_test - ntk_test @ torch.linalg.pinv(ntk_train, hermitian=True) @ (r0 - decay @ r0)
    return f_train, f_test
'''

ALT_RELU_NNGP = '''
def relu_nngp(X1, X2, depth, weight_var=2.0, bias_var=0.0):
    """Pair by pair in Python floats, the angle from atan2 (no arccos, no clipping)."""
    d = X1.shape[1]
    out = torch.empty(X1.shape[0], X2.shape[0], dtype=X1.dtype)
    for i in range(X1.shape[0]):
        for j in range(X2.shape[0]):
            x, z = X1[i].tolist(), X2[j].tolist()
            s = weight_var * sum(u * v for u, v in zip(x, z)) / d + bias_var
            a = weight_var * sum(u * u for u in x) / d + bias_var
            b = weight_var * sum(v * v for v in z) / d + bias_var
            for _ in range(depth):
                t = math.atan2(math.sqrt(max(a * b - s * s, 0.0)), s)
                s = weight_var * (math.sqrt(a * b) * math.sin(t) + (math.pi - t) * s) / (2 * math.pi) + bias_var
                a, b = weight_var * a / 2 + bias_var, weight_var * b / 2 + bias_var
            out[i, j] = s
    return out
'''

ALT_RELU_NTK_VIA_NNGP = '''
def relu_ntk(X1, X2, depth, weight_var=2.0, bias_var=0.0):
    """Calls relu_nngp once per layer (quadratic in the depth) for Sigma^(l) and its diagonals."""
    theta = relu_nngp(X1, X2, 0, weight_var, bias_var)
    for level in range(depth):
        s = relu_nngp(X1, X2, level, weight_var, bias_var)
        q1 = torch.diagonal(relu_nngp(X1, X1, level, weight_var, bias_var))
        q2 = torch.diagonal(relu_nngp(X2, X2, level, weight_var, bias_var))
        t = torch.arccos(torch.clamp(s / torch.sqrt(torch.outer(q1, q2)), -1.0, 1.0))
        theta = theta * weight_var * (1 - t / math.pi) / 2 + relu_nngp(X1, X2, level + 1, weight_var, bias_var)
    return theta
'''

ALT_CRITICAL_LR = '''
def critical_lr(model, X):
    """lambda_max(J J^T) = sigma_max(J)^2, with J from per-sample autograd gradients."""
    params = list(model.parameters())
    J = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(model(x[None]).sum(), params)]) for x in X])
    return float(2 / torch.linalg.matrix_norm(J, ord=2) ** 2)
'''

ALT_LINEARIZATION_GAP = '''
def linearization_gap(model, X, y, X_test, lr, steps):
    """torch.optim.SGD on the network; the linearisation iterated in function space with the NTK at the call."""
    with torch.no_grad():
        f_lin, f_lin_t = model(X).reshape(-1).clone(), model(X_test).reshape(-1).clone()
    K, Kt = empirical_ntk(model, X, X), empirical_ntk(model, X_test, X)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    out = []
    for k in range(steps + 1):
        with torch.no_grad():
            out.append(torch.linalg.vector_norm(model(X_test).reshape(-1) - f_lin_t))
        if k == steps:
            break
        r = f_lin - y
        f_lin, f_lin_t = f_lin - lr * K @ r, f_lin_t - lr * Kt @ r
        opt.zero_grad()
        (0.5 * ((model(X).reshape(-1) - y) ** 2).sum()).backward()
        opt.step()
    return torch.stack(out)
'''

ALTERNATIVES = {  # id -> (grading group, unit, {solution grade_id: source})
    "ex1_relu_ntk_pairwise_python_loops": ("alternatives", "ex1", {"ex1_relu_ntk": ALT_RELU_NTK}),
    "ex2_biases_drawn_first_and_vmap_grad_ntk": ("alternatives", "ex2", {"ex2_ntkmlp": ALT_NTKMLP,
                                                                         "ex2_empirical_ntk": ALT_EMPIRICAL_NTK}),
    "ex3_iterated_gradient_descent": ("alternatives", "ex3", {"ex3_linearized_predictions": ALT_LINEARIZED}),
    "ex4_numpy_arctan2_cholesky_iterated_curve": ("alternatives", "ex4", ALT_ARORA),
    "ex5_lstsq_ridge_and_torch_optim_sgd_float32_losses": ("alternatives", "ex5", {
        "ex5_kernel_ridge_predict": ALT_KERNEL_RIDGE, "ex5_fit_distance_to_init": ALT_FIT}),
    "ex1_outer_of_square_roots_normalisation": ("C", "ex1", {"ex1_relu_ntk": ALT_RELU_NTK_OUTER_SQRT}),
    "ex2_autograd_loop_ntk": ("C", "ex2", {"ex2_empirical_ntk": ALT_EMPIRICAL_NTK_LOOP}),
    "ex5_scipy_symmetric_solve": ("C", "ex5", {"ex5_kernel_ridge_predict": ALT_KERNEL_RIDGE_CHOLESKY}),
    "ex3_matrix_power_and_pinv": ("D", "ex3", {"ex3_linearized_predictions": ALT_LINEARIZED_PINV}),
    "ex1a_pairwise_atan2_loops": ("alternatives", "ex1a", {"ex1_relu_nngp": ALT_RELU_NNGP}),
    "ex2c_spectral_norm_of_autograd_jacobian": ("alternatives", "ex2c", {"ex2_critical_lr": ALT_CRITICAL_LR}),
    "ex3b_sgd_and_function_space_iteration": ("alternatives", "ex3b", {"ex3_linearization_gap": ALT_LINEARIZATION_GAP}),
    "ex1_ntk_reusing_nngp_per_layer": ("E", "ex1", {"ex1_relu_ntk": ALT_RELU_NTK_VIA_NNGP}),
}

# --- plausible bugs: edits of the reference source, and the cells that must catch them -------------

BUGS = {  # id -> (grading group, unit, solution grade_id, [(old, new)], cells that must score 0)
    "ex1_missing_fan_in_factor": ("A", "ex1", "ex1_relu_ntk", [
        ("sigma = weight_var * (X1 @ X2.T) / d + bias_var", "sigma = weight_var * (X1 @ X2.T) + bias_var"),
        ("q1 = weight_var * (X1 * X1).sum(dim=1) / d + bias_var", "q1 = weight_var * (X1 * X1).sum(dim=1) + bias_var"),
        ("q2 = weight_var * (X2 * X2).sum(dim=1) / d + bias_var", "q2 = weight_var * (X2 * X2).sum(dim=1) + bias_var")],
        CELLS["ex1"]),
    "ex1_computed_in_float32": ("B", "ex1", "ex1_relu_ntk", [
        ("    d = X1.shape[1]\n", "    X1, X2 = X1.float(), X2.float()\n    d = X1.shape[1]\n")],
        ["ex1_shape_and_diagonal"]),
    "ex2_empirical_ntk_weights_only": ("A", "ex2", "ex2_empirical_ntk", [
        ("    for name in params:\n", "    for name in [k for k in params if 'bias' not in k]:\n")],
        ["ex2_empirical_ntk_autograd", "ex2_empirical_ntk_linear", "ex2_empirical_ntk_wide_limit"]),
    "ex3_test_update_sign": ("A", "ex3", "ex3_linearized_predictions", [
        ("f_test = f0_test - ntk_test @", "f_test = f0_test + ntk_test @")],
        ["ex3_zero_and_one_step", "ex3_test_outputs"]),
    "ex3_returns_initial_outputs": ("B", "ex3", "ex3_linearized_predictions", [
        ("    return f_train, f_test", "    return f0_train, f0_test")],
        CELLS["ex3"]),
    "ex4_curve_off_by_one_steps": ("A", "ex4", "ex4_predicted_residual_curve", [
        ("k = torch.arange(steps + 1, dtype=H.dtype)", "k = torch.arange(1, steps + 2, dtype=H.dtype)")],
        ["ex4_residual_curve", "ex4_true_vs_random_labels"]),
    "ex4_curve_eigvec_transpose": ("B", "ex4", "ex4_predicted_residual_curve", [
        ("proj = (evecs.T @ y) ** 2", "proj = (evecs @ y) ** 2")],
        ["ex4_residual_curve", "ex4_true_vs_random_labels"]),
    "ex5_mean_instead_of_sum_loss": ("B", "ex5", "ex5_fit_distance_to_init", [
        ("fit = 0.5 * ((model(X).reshape(-1) - y) ** 2).sum()", "fit = 0.5 * ((model(X).reshape(-1) - y) ** 2).mean()")],
        ["ex5_fit_losses", "ex5_fit_parameters", "ex5_label_noise"]),
    "ex5_weight_decay_towards_zero": ("D", "ex5", "ex5_fit_distance_to_init", [
        ("    init = [p.detach().clone() for p in params]\n", "    init = [torch.zeros_like(p) for p in params]\n")],
        ["ex5_fit_losses", "ex5_fit_parameters"]),
    "ex2_fan_out_scaling": ("D", "ex2", "ex2_ntkmlp", [
        ("math.sqrt(layer.in_features)", "math.sqrt(layer.out_features)")],
        ["ex2_ntkmlp_forward", "ex2_empirical_ntk_wide_limit"]),
    "ex3_no_limit_at_zero_eigenvalue": ("C", "ex3", "ex3_linearized_predictions", [
        ("    gain = torch.where(tiny, lr * steps * torch.ones_like(evals), (1 - decay) / safe)\n",
         "    gain = (1 - decay) / evals\n")],
        ["ex3_singular_kernel"]),
    "ex4_bound_without_factor_two": ("C", "ex4", "ex4_generalization_bound", [
        ("torch.sqrt(2 * (y @", "torch.sqrt(1 * (y @")],
        ["ex4_bound_values", "ex4_bound_vs_corruption"]),
    "ex4_gram_activation_probability_only": ("D", "ex4", "ex4_arora_gram", [
        ("    return gram * (math.pi", "    return (math.pi")],
        ["ex4_gram_values", "ex4_bound_vs_corruption"]),
    "ex1_derivative_kernel_missing_half": ("D", "ex1", "ex1_relu_ntk", [
        ("sigma_dot = weight_var * (math.pi - angle) / (2 * math.pi)", "sigma_dot = weight_var * (math.pi - angle) / math.pi")],
        CELLS["ex1"]),
    "ex1a_degree0_kernel_for_sigma": ("A", "ex1a", "ex1_relu_nngp", [
        ("sigma = weight_var * norm * (torch.sin(angle) + (math.pi - angle) * cos) / (2 * math.pi) + bias_var",
         "sigma = weight_var * norm * (math.pi - angle) / (2 * math.pi) + bias_var")],
        CELLS["ex1a"]),
    "ex1a_diagonal_not_propagated": ("B", "ex1a", "ex1_relu_nngp", [
        ("        q1 = weight_var * q1 / 2 + bias_var\n        q2 = weight_var * q2 / 2 + bias_var\n", "")],
        CELLS["ex1a"]),
    "ex1a_bias_only_in_first_layer": ("C", "ex1a", "ex1_relu_nngp", [
        ("(math.pi - angle) * cos) / (2 * math.pi) + bias_var", "(math.pi - angle) * cos) / (2 * math.pi)")],
        CELLS["ex1a"]),
    "ex2c_one_over_lambda_max": ("B", "ex2c", "ex2_critical_lr", [
        ("return 2.0 / torch.linalg", "return 1.0 / torch.linalg")],
        CELLS["ex2c"]),
    "ex2c_mean_loss_convention": ("C", "ex2c", "ex2_critical_lr", [
        ("return 2.0 / torch.linalg", "return 2.0 * X.shape[0] / torch.linalg")],
        CELLS["ex2c"]),
    "ex2c_trace_instead_of_lambda_max": ("E", "ex2c", "ex2_critical_lr", [
        ("eigvalsh(empirical_ntk(model, X, X)).max()", "eigvalsh(empirical_ntk(model, X, X)).sum()")],
        ["ex2_critical_lr_values"]),
    "ex3b_gap_on_training_points": ("D", "ex3b", "ex3_linearization_gap", [
        ("        _, f_lin = linearized_predictions(", "        f_lin, _ = linearized_predictions("),
        ("gaps.append((model(X_test).reshape(-1) - f_lin).norm())", "gaps.append((model(X).reshape(-1) - f_lin).norm())")],
        ["ex3_linearization_gap_values"]),
    "ex3b_linearisation_one_step_ahead": ("E", "ex3b", "ex3_linearization_gap", [
        ("f0, f0_test, y, lr, k)", "f0, f0_test, y, lr, k + 1)")],
        ["ex3_linearization_gap_values"]),
}

_DEPS = {unit: deps for unit, (_, deps) in UNITS.items()}
_BUGGED = {}  # grading group -> solution cells replaced by bugs
for _bug, (_grp, _unit, _gid, *_rest) in BUGS.items():
    _BUGGED.setdefault(_grp, set()).add(_gid)
_GROUP_UNITS: dict[str, list[str]] = {}
for _v, (_grp, _unit, *_rest) in list(BUGS.items()) + list(ALTERNATIVES.items()):
    assert _unit not in _GROUP_UNITS.setdefault(_grp, []), f"two variants of {_unit} in grading {_grp}"
    _GROUP_UNITS[_grp].append(_unit)
for _v, (_grp, _unit, *_rest) in ALTERNATIVES.items():
    assert not _DEPS[_unit] & _BUGGED.get(_grp, set()), f"{_v}: a dependency of {_unit} is bugged in grading {_grp}"
for _v, (_grp, _unit, _gid, *_rest) in BUGS.items():
    assert not (_DEPS[_unit] - {_gid}) & _BUGGED[_grp], f"{_v}: another dependency of {_unit} is bugged in {_grp}"

_graded: dict[str, object] = {}  # grading group -> Graded, shared by the tests of that group


def _bug_source(solution_source, gid, edits):
    return edit(solution_source(PS, gid), *edits)


def _grading(group, grade_variant, solution_source):
    if group not in _graded:
        replace = {gid: src for grp, _, cells in ALTERNATIVES.values() if grp == group for gid, src in cells.items()}
        replace.update({gid: _bug_source(solution_source, gid, edits)
                        for grp, _, gid, edits, _ in BUGS.values() if grp == group})
        g = grade_variant(PS, replace)
        assert g.error is None, g.error
        assert sorted(g.max_scores) == sorted(c for cells in CELLS.values() for c in cells), "graded cells changed"
        assert sum(g.max_scores.values()) == 100
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


def _untouched(group):
    """Cells of the units that carry no variant in ``group`` and call no solution cell bugged there."""
    return [c for unit, (cells, deps) in UNITS.items()
            if unit not in _GROUP_UNITS[group] and not deps & _BUGGED[group] for c in cells]


# (grading C has a variant in every unit it does not break: its alternatives are the control there)
@pytest.mark.parametrize("group", sorted(g for g in _BUGGED if _untouched(g)))
def test_bug_gradings_leave_other_exercises_intact(group, grade_variant, solution_source):
    g = _grading(group, grade_variant, solution_source)
    untouched = _untouched(group)
    lost = {c: g.messages.get(c) for c in untouched if g.scores[c] != g.max_scores[c]}
    assert not lost, f"grading {group}: reference exercises lost points {lost}"
