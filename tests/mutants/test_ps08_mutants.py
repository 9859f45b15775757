"""ps08 (NTK) mutation check: correct alternatives get full marks, plausible bugs lose points.

Grading the whole notebook takes ~15 s (its figure cells run too), so variants share gradings:
one grading carries at most one variant per exercise. That is sound because every graded cell of
exercise k calls only exercise k's functions (the figure cells use several, but are ungraded).
Each variant still has its own test and asserts only on its own exercise's cells; the control
test checks that exercises left untouched in a bug grading keep full marks.
"""

from __future__ import annotations

import pytest
from variants import edit

pytestmark = pytest.mark.slow

PS = "ps08"

CELLS = {
    "ex1": ["ex1_shape_and_diagonal", "ex1_depth1_closed_form", "ex1_deep_recursion", "ex1_wide_network_limit"],
    "ex2": ["ex2_ntkmlp_layers_init", "ex2_ntkmlp_forward", "ex2_empirical_ntk_autograd", "ex2_empirical_ntk_linear",
            "ex2_empirical_ntk_wide_limit"],
    "ex3": ["ex3_zero_and_one_step", "ex3_train_outputs", "ex3_test_outputs", "ex3_wide_net_tracks_linearization"],
    "ex4": ["ex4_gram_values", "ex4_bound_values", "ex4_residual_curve", "ex4_true_vs_random_labels"],
    "ex5": ["ex5_kernel_ridge", "ex5_fit_losses", "ex5_fit_parameters", "ex5_label_noise"],
}

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

ALTERNATIVES = {  # id -> (exercise, {solution grade_id: source})
    "ex1_relu_ntk_pairwise_python_loops": ("ex1", {"ex1_relu_ntk": ALT_RELU_NTK}),
    "ex2_biases_drawn_first_and_vmap_grad_ntk": ("ex2", {"ex2_ntkmlp": ALT_NTKMLP, "ex2_empirical_ntk": ALT_EMPIRICAL_NTK}),
    "ex3_iterated_gradient_descent": ("ex3", {"ex3_linearized_predictions": ALT_LINEARIZED}),
    "ex5_lstsq_ridge_and_torch_optim_sgd_float32_losses": ("ex5", {"ex5_kernel_ridge_predict": ALT_KERNEL_RIDGE,
                                                                   "ex5_fit_distance_to_init": ALT_FIT}),
}

# --- plausible bugs: edits of the reference source, and the cells that must catch them -------------

BUGS = {  # id -> (grading group, exercise, solution grade_id, [(old, new)], cells that must score 0)
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
        ["ex3_zero_and_one_step", "ex3_test_outputs", "ex3_wide_net_tracks_linearization"]),
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
}

_GROUP_EXERCISES: dict[str, list[str]] = {}
for _bug, (_grp, _ex, *_rest) in BUGS.items():
    assert _ex not in _GROUP_EXERCISES.setdefault(_grp, []), f"two bugs of {_ex} in grading {_grp}"
    _GROUP_EXERCISES[_grp].append(_ex)
assert len({ex for ex, _ in ALTERNATIVES.values()}) == len(ALTERNATIVES), "one alternative per exercise per grading"

_graded: dict[str, object] = {}  # grading group -> Graded, shared by the tests of that group


def _bug_source(solution_source, gid, edits):
    return edit(solution_source(PS, gid), *edits)


def _grading(group, grade_variant, solution_source):
    if group not in _graded:
        if group == "alternatives":
            replace = {gid: src for _, cells in ALTERNATIVES.values() for gid, src in cells.items()}
        else:
            replace = {gid: _bug_source(solution_source, gid, edits)
                       for grp, _, gid, edits, _ in BUGS.values() if grp == group}
        g = grade_variant(PS, replace)
        assert g.error is None, g.error
        assert sorted(g.max_scores) == sorted(c for cells in CELLS.values() for c in cells), "graded cells changed"
        _graded[group] = g
    return _graded[group]


@pytest.mark.parametrize("variant", list(ALTERNATIVES))
def test_correct_alternative_gets_full_marks(variant, grade_variant, solution_source):
    ex, _ = ALTERNATIVES[variant]
    g = _grading("alternatives", grade_variant, solution_source)
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


@pytest.mark.parametrize("group", sorted(_GROUP_EXERCISES))
def test_bug_gradings_leave_other_exercises_intact(group, grade_variant, solution_source):
    g = _grading(group, grade_variant, solution_source)
    untouched = [c for ex, cells in CELLS.items() if ex not in _GROUP_EXERCISES[group] for c in cells]
    assert untouched, group
    lost = {c: g.messages.get(c) for c in untouched if g.scores[c] != g.max_scores[c]}
    assert not lost, f"grading {group}: reference exercises lost points {lost}"
