"""ps06 (adversarial vulnerability) mutation check: correct alternatives get full marks, plausible
bugs lose the cells meant to catch them.

Gradings are shared, as in ps08: one grading carries at most one variant per exercise, which is
sound because every graded cell of exercise k calls only exercise k's functions (the read-only
helpers -- victims, BlackBox, samplers -- belong to no exercise). Each variant has its own test and
asserts only on its own exercise's cells; the control test checks that exercises left untouched in
a bug grading keep full marks.
"""

from __future__ import annotations

import pytest
from variants import edit, swap_functions

pytestmark = pytest.mark.slow

PS = "ps06"

CELLS = {
    "ex1": ["ex1_fgsm_linear", "ex1_fgsm_mlp", "ex1_pgd_linf", "ex1_pgd_l2", "ex1_min_perturbation",
            "ex1_attacks_on_cnn"],
    "ex2": ["ex2_latent_robustness", "ex2_rin_cdf", "ex2_fawzi_bound", "ex2_generator_lipschitz",
            "ex2_bound_any_classifier"],
    "ex3": ["ex3_hemisphere_expansion", "ex3_levy_bound", "ex3_eps_for_fraction", "ex3_isoperimetry_caps",
            "ex3_eps_exponent"],
    "ex4": ["ex4_feasible", "ex4_queries_counted", "ex4_success_rate"],
    "ex5": ["ex5_dct_basis", "ex5_search_constraints", "ex5_lowfreq_fewer_queries"],
    "ex6": ["ex6_semantic_gap", "ex6_universal", "ex6_universal_fooling"],
    "ex6at": ["ex6_adv_training_step", "ex6_adv_training_robust"],   # exercise 6(c): its own solution cell
}
SOLUTION_CELL = {"ex1": "ex1_white_box", "ex2": "ex2_any_classifier", "ex3": "ex3_inevitable", "ex4": "ex4_nattack",
                 "ex5": "ex5_projection", "ex6": "ex6_time_series",
                 "ex6at": "ex6_adversarial_training"}

# --- correct alternatives ------------------------------------------------------------------------

ALT_EX1 = '''
def fgsm(model, x, y, eps, targeted=False):
    # torch.func.grad of the mean loss written as log_softmax + nll; sign flipped for targeted
    def loss(z):
        return F.nll_loss(F.log_softmax(model(z), dim=1), y)
    g = torch.func.grad(loss)(x.detach())
    s = -1.0 if targeted else 1.0
    return torch.clamp(x.detach() + s * eps * torch.sign(g), 0.0, 1.0)

def pgd_linf(model, x, y, eps, alpha, steps, x0, targeted=False):
    # ball first, then range, applied as two clamps; mean loss
    def proj(z):
        return (x + (z - x).clamp(-eps, eps)).clamp(0.0, 1.0)
    xa = proj(x0.detach())
    for _ in range(steps):
        xa.requires_grad_(True)
        loss = F.cross_entropy(model(xa), y)
        loss.backward()
        step = alpha * xa.grad.sign()
        xa = proj(xa.detach() - step if targeted else xa.detach() + step)
    return xa

def pgd_l2(model, x, y, eps, alpha, steps, x0):
    # numpy projection of each row, a loop over samples for the normalisation
    def proj(z):
        d = (z - x).numpy()
        n = np.linalg.norm(d, axis=1, keepdims=True)
        d = np.where(n > eps, d * eps / np.maximum(n, 1e-300), d)
        return torch.from_numpy(np.clip(x.numpy() + d, 0.0, 1.0))
    xa = proj(x0.detach())
    for _ in range(steps):
        xr = xa.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(xr), y), xr)
        for i in range(g.shape[0]):
            nrm = g[i].norm()
            if nrm > 0:
                g[i] = g[i] / nrm
        xa = proj(xa + alpha * g)
    return xa

def linear_min_perturbation(w, b, x, p):
    # numpy; the l1 minimiser spreads over all coordinates of maximal |w_i|
    w, x = w.numpy(), x.numpy()
    m = float(w @ x + b)
    if p == 1:
        big = np.abs(w) == np.abs(w).max()
        delta = np.where(big, -m * np.sign(w) / (np.abs(w).max() * big.sum()), 0.0)
        return abs(m) / np.abs(w).max(), delta
    if p == 2:
        return abs(m) / np.sqrt(w @ w), -m * w / (w @ w)
    return abs(m) / np.abs(w).sum(), -m * np.sign(w) / np.abs(w).sum()
'''

ALT_EX2 = '''
def linear_latent_robustness(W, c, Z):
    # a loop over classes in numpy
    W, c, Z = W.numpy(), c.numpy(), Z.numpy()
    S = Z @ W.T + c
    k = S.argmax(axis=1)
    out = np.full(len(Z), np.inf)
    for j in range(W.shape[0]):
        d = (S[np.arange(len(Z)), k] - S[:, j]) / np.linalg.norm(W[k] - W[j], axis=1).clip(1e-300)
        out = np.where(k == j, out, np.minimum(out, d))
    return out

def linear_rin_cdf(A, w, b, eta):
    # projection of w onto range(A) by least squares; scipy's normal cdf
    A, w, eta = A.numpy(), w.numpy(), np.asarray(eta)
    coef = np.linalg.lstsq(A, w, rcond=None)[0]
    q = np.linalg.norm(A @ coef)
    s = np.linalg.norm(A.T @ w)
    return scipy.stats.norm.cdf((eta * q - b) / s) - scipy.stats.norm.cdf((-eta * q - b) / s)

def fawzi_bound(eta, lip):
    t = np.asarray(eta, dtype=np.float64) / lip
    return np.maximum(0.0, 1.0 - np.sqrt(np.pi / 2) * np.exp(-t * t / 2))

def generator_lipschitz(generator):
    lip = 1.0
    for m in generator.modules():
        if isinstance(m, nn.Linear):
            lip = lip * np.linalg.svd(m.weight.detach().numpy(), compute_uv=False).max()
    return float(lip)
'''

ALT_EX3 = '''
def hemisphere_expansion(n, eps):
    # (1 + x_1) / 2 ~ Beta((n-1)/2, (n-1)/2); scipy.stats instead of the incomplete beta function
    e = np.clip(np.asarray(eps, dtype=float), 0, np.pi / 2)
    return scipy.stats.beta((n - 1) / 2, (n - 1) / 2).sf((1 - np.sin(e)) / 2)

def levy_bound(n, eps):
    return 1 - math.sqrt(math.pi / 8) * np.exp(-(n - 1) * np.square(np.asarray(eps, dtype=float)) / 2)

def eps_for_fraction(n, frac):
    # bisection on hemisphere_expansion
    if frac <= 0.5:
        return 0.0
    return scipy.optimize.brentq(lambda t: hemisphere_expansion(n, np.array([t]))[0] - frac, 0.0, np.pi / 2, xtol=1e-15)

def measure_eps_exponent(frac):
    # two far-apart dimensions
    n1, n2 = 50000, 500000
    return math.log(eps_for_fraction(n2, frac) / eps_for_fraction(n1, frac)) / math.log(n2 / n1)
'''

ALT_EX4 = '''
def nattack(query, x, y, eps, generator, pop_size=20, sigma=0.1, lr=0.02, max_queries=2000):
    # mean initialised at 0; only population members are checked (no separate query of the mean);
    # rank-free standardisation with the population standard deviation (ddof=0)
    x = x.detach()
    z0 = torch.atanh((2 * x - 1).clamp(-1 + 1e-6, 1 - 1e-6))
    mu = torch.zeros_like(x)
    used = 0
    last = x.clone()
    while used + pop_size <= max_queries:
        eps_i = torch.randn(pop_size, x.numel(), generator=generator, dtype=x.dtype)
        cand = torch.clamp((torch.tanh(z0 + mu + sigma * eps_i) + 1) / 2, x - eps, x + eps)
        P = query(cand)
        used += pop_size
        wrong = P.argmax(dim=1) != y
        if bool(wrong.any()):
            return cand[wrong.nonzero()[0, 0]], True, used
        lp = P.clamp_min(1e-30).log()
        rest = torch.cat([lp[:, :y], lp[:, y + 1:]], dim=1).max(dim=1).values
        f = torch.relu(lp[:, y] - rest)
        f = (f - f.mean()) / (f.std(unbiased=False) + 1e-7)
        mu = mu - lr / (pop_size * sigma) * (eps_i.T @ f)
        last = cand[0]
    return last, False, used
'''

ALT_EX5 = '''
def dct_lowfreq_basis(length, k):
    # scipy's orthonormal inverse DCT of the first k unit vectors
    return torch.from_numpy(scipy.fft.idct(np.eye(length)[:k], norm="ortho", axis=1).T.copy())

def subspace_random_search(query, x, y, eps, basis, max_queries, step, generator):
    # coefficients normalised in the subspace (orthonormal basis: same norm); margin via topk
    def margin(P):
        top = torch.topk(P, 2).values
        return float(P[y] - (top[1] if int(P.argmax()) == y else top[0]))
    P = query(x.unsqueeze(0))[0]
    n = 1
    if int(P.argmax()) != y:
        return x.clone(), True, n
    coef = torch.zeros(basis.shape[1], dtype=x.dtype)
    best = margin(P)
    while n < max_queries:
        u = torch.randn(basis.shape[1], generator=generator, dtype=x.dtype)
        c = coef + step * u / torch.linalg.vector_norm(u)
        r = torch.linalg.vector_norm(c)
        if r > eps:
            c = c * (eps / r)
        P = query((x + basis @ c).unsqueeze(0))[0]
        n += 1
        if int(P.argmax()) != y:
            return x + basis @ c, True, n
        if margin(P) < best:
            coef, best = c, margin(P)
    return x + basis @ coef, False, n
'''

ALT_EX6 = '''
def semantic_gap_attack(features, centroids, x, y, eps, alpha, steps):
    # torch.func.grad of the mean distance (same signs), projection by min/max
    def gap(z):
        return ((features(z) - centroids[y]) ** 2).sum(dim=1).mean()
    xa = x.detach().clone()
    for _ in range(steps):
        xa = torch.min(torch.max(xa + alpha * torch.sign(torch.func.grad(gap)(xa)), x - eps), x + eps)
    return xa

def universal_perturbation(model, X, y, eps, alpha, steps):
    # mean loss, v as a (1, D) row broadcast over the batch
    v = torch.zeros(1, X.shape[1], dtype=X.dtype)
    for _ in range(steps):
        v.requires_grad_(True)
        loss = F.nll_loss(F.log_softmax(model(X + v), dim=1), y)
        (g,) = torch.autograd.grad(loss, v)
        v = torch.clamp(v.detach() + alpha * g.sign(), -eps, eps)
    return v[0]
'''

ALT_EX6AT = '''
def fgsm_adversarial_training(model, X, y, eps, lr, steps):
    # the library route: torch.optim.Adam; input gradient by torch.func.grad of the summed loss;
    # log_softmax + nll; the history kept in a Python list
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    hist = []
    for _ in range(steps):
        gx = torch.func.grad(lambda z: F.cross_entropy(model(z), y, reduction="sum"))(X.detach())
        xa = torch.clamp(X.detach() + eps * torch.sign(gx), 0.0, 1.0)
        opt.zero_grad()
        loss = F.nll_loss(F.log_softmax(model(xa), dim=1), y)
        loss.backward()
        opt.step()
        hist.append(loss.item())
    return torch.tensor(hist, dtype=torch.float64)
'''

ALTERNATIVES = {  # id -> (exercise, source)
    "ex1_func_grad_two_clamps_numpy_l2_projection_spread_l1": ("ex1", ALT_EX1),
    "ex2_numpy_loops_lstsq_projection_svd": ("ex2", ALT_EX2),
    "ex3_scipy_beta_brentq_two_point_exponent": ("ex3", ALT_EX3),
    "ex4_zero_mean_population_only": ("ex4", ALT_EX4),
    "ex5_scipy_idct_coefficient_space": ("ex5", ALT_EX5),
    "ex6_func_grad_mean_losses": ("ex6", ALT_EX6),
    "ex6at_torch_optim_adam_func_grad": ("ex6at", ALT_EX6AT),
}

# --- plausible bugs: (grading group, exercise, [(old, new)], cells that must score 0) ------------

BUGS = {
    # targeted FGSM ascends the target's loss like the untargeted attack
    "ex1_targeted_sign_ignored": ("A", "ex1", [
        ("direction = -g.sign() if targeted else g.sign()", "direction = g.sign()")],
        ["ex1_fgsm_linear", "ex1_fgsm_mlp"]),
    # r_in measured in all of R^D: the projection of w onto range(A) forgotten
    "ex2_rin_without_projection": ("A", "ex2", [
        ("q = torch.linalg.vector_norm(Q.T @ w)", "q = torch.linalg.vector_norm(w)")],
        ["ex2_rin_cdf"]),
    # sin(eps) linearised to eps (a chordal/flat approximation)
    "ex3_expansion_linearised": ("A", "ex3", [
        ("(1.0 - np.sin(e)) / 2", "(1.0 - e) / 2")],
        ["ex3_hemisphere_expansion"]),
    # the query of the mean is not counted
    "ex4_mean_query_not_counted": ("A", "ex4", [
        ("        queries += 1\n", "")],
        ["ex4_queries_counted"]),
    # DCT columns not normalised
    "ex5_basis_not_normalised": ("A", "ex5", [
        ("return B / B.norm(dim=0, keepdim=True)", "return B")],
        ["ex5_dct_basis"]),
    # universal perturbation never projected onto the eps-ball
    "ex6_universal_not_projected": ("A", "ex6", [
        ("v = (v.detach() + alpha * g.sign()).clamp(-eps, eps)", "v = v.detach() + alpha * g.sign()")],
        ["ex6_universal"]),
    # adversarial training that computes the FGSM examples but takes its steps on the clean batch
    "ex6at_trains_on_clean_data": ("A", "ex6at", [
        ("loss = F.cross_entropy(model(xa), y)", "loss = F.cross_entropy(model(X), y)")],
        ["ex6_adv_training_step", "ex6_adv_training_robust"]),
    # PGD projects onto the ball but forgets the valid range
    "ex1_pgd_no_range_clip": ("B", "ex1", [
        ("lo, hi = (x - eps).clamp(min=0.0), (x + eps).clamp(max=1.0)", "lo, hi = x - eps, x + eps")],
        ["ex1_pgd_linf"]),
    # distance to the boundary taken as the raw score gap (no division by ||W_c - W_k||)
    "ex2_robustness_unnormalised_gap": ("B", "ex2", [
        ("ratio = gap / dist.clamp_min(1e-300)", "ratio = gap.clone()")],
        ["ex2_latent_robustness"]),
    # chordal instead of geodesic radius
    "ex3_eps_chordal": ("B", "ex3", [
        ("return float(np.arcsin(np.clip(1.0 - 2.0 * u, 0.0, 1.0)))", "return float(np.clip(1.0 - 2.0 * u, 0.0, 1.0))")],
        ["ex3_eps_for_fraction"]),
    # samples never projected onto the eps-ball
    "ex4_no_projection": ("B", "ex4", [
        ("return x + ((torch.tanh(z) + 1) / 2 - x).clamp(-eps, eps)", "return (torch.tanh(z) + 1) / 2")],
        ["ex4_feasible"]),
    # l2 budget enforced coordinate-wise (l_inf clipping): leaves the subspace
    "ex5_budget_clipped_coordinatewise": ("B", "ex5", [
        ("cand = cand * min(1.0, eps / float(cand.norm()))", "cand = cand.clamp(-eps / 40, eps / 40)")],
        ["ex5_search_constraints"]),
    # feature distance minimised instead of maximised
    "ex6_semantic_gap_descends": ("B", "ex6", [
        ("xa = x + (xa.detach() + alpha * g.sign() - x).clamp(-eps, eps)",
         "xa = x + (xa.detach() - alpha * g.sign() - x).clamp(-eps, eps)")],
        ["ex6_semantic_gap"]),
    # sign error: the training examples descend the loss (easier, not harder, examples)
    "ex6at_perturbation_sign_flipped": ("B", "ex6at", [
        ("xa = (X + eps * gx.sign()).clamp(0.0, 1.0)", "xa = (X - eps * gx.sign()).clamp(0.0, 1.0)")],
        ["ex6_adv_training_step", "ex6_adv_training_robust"]),
    # wrong dual norm for l_inf (l2 norm of w)
    "ex1_linf_wrong_dual_norm": ("C", "ex1", [
        ("delta = -m / w.abs().sum() * w.sign()", "delta = -m / w.norm() * w.sign()"),
        ("q = {1: math.inf, 2: 2.0}.get(p, 1.0)", "q = {1: math.inf, 2: 2.0}.get(p, 2.0)")],
        ["ex1_min_perturbation"]),
    # Frobenius norms: a valid but loose constant
    "ex2_lipschitz_frobenius": ("C", "ex2", [
        ("matrix_norm(layer.weight.detach(), ord=2)", "matrix_norm(layer.weight.detach(), ord='fro')")],
        ["ex2_generator_lipschitz"]),
    # exponent fitted over small dimensions
    "ex3_exponent_small_n": ("C", "ex3", [
        ("ns = np.array([1000, 2000, 4000, 8000, 16000, 32000])", "ns = np.array([2, 3, 4, 5, 6, 8])")],
        ["ex3_eps_exponent"]),
    # NES step in the wrong direction (ascends the margin loss)
    "ex4_nes_ascends_loss": ("C", "ex4", [
        ("mu = mu - lr / (pop_size * sigma) * (zs @ noise)", "mu = mu + lr / (pop_size * sigma) * (zs @ noise)")],
        ["ex4_success_rate"]),
    # the highest k frequencies instead of the lowest
    "ex5_highest_frequencies": ("C", "ex5", [
        ("f = torch.arange(k, dtype=torch.float64)", "f = torch.arange(length - k, length, dtype=torch.float64)")],
        ["ex5_dct_basis", "ex5_lowfreq_fewer_queries"]),
    # universal perturbation descends the loss
    "ex6_universal_descends": ("C", "ex6", [
        ("v = (v.detach() + alpha * g.sign()).clamp(-eps, eps)", "v = (v.detach() - alpha * g.sign()).clamp(-eps, eps)")],
        ["ex6_universal", "ex6_universal_fooling"]),
    # FGSM examples not clipped to the valid range [0, 1] (robustness still improves: only the step cell is fair to take)
    "ex6at_no_range_clip": ("C", "ex6at", [
        ("xa = (X + eps * gx.sign()).clamp(0.0, 1.0)", "xa = X + eps * gx.sign()")],
        ["ex6_adv_training_step"]),
    # targeted PGD/BIM ascends the target's loss like the untargeted attack
    "ex1_pgd_targeted_flag_ignored": ("D", "ex1", [
        ("xa = xa.detach() + (-alpha if targeted else alpha) * g.sign()", "xa = xa.detach() + alpha * g.sign()")],
        ["ex1_pgd_linf", "ex1_attacks_on_cnn"]),
    # a fresh Adam state at every step (sign-like steps without momentum)
    "ex6at_adam_state_reset_every_step": ("D", "ex6at", [
        ("        adam_update(params, grads, state, lr)", "        adam_update(params, grads, {}, lr)")],
        ["ex6_adv_training_step"]),
    # examples crafted once against the initial model, never against the current one
    "ex6at_examples_crafted_once": ("E", "ex6at", [
        ("    for t in range(steps):\n        xr = X.clone().requires_grad_(True)\n"
         "        (gx,) = torch.autograd.grad(F.cross_entropy(model(xr), y), xr)\n"
         "        xa = (X + eps * gx.sign()).clamp(0.0, 1.0)\n",
         "    xr = X.clone().requires_grad_(True)\n"
         "    (gx,) = torch.autograd.grad(F.cross_entropy(model(xr), y), xr)\n"
         "    xa = (X + eps * gx.sign()).clamp(0.0, 1.0)\n"
         "    for t in range(steps):\n")],
        ["ex6_adv_training_step", "ex6_adv_training_robust"]),
}

_GROUP_EXERCISES: dict[str, list[str]] = {}
for _bug, (_grp, _ex, *_rest) in BUGS.items():
    assert _ex not in _GROUP_EXERCISES.setdefault(_grp, []), f"two bugs of {_ex} in grading {_grp}"
    _GROUP_EXERCISES[_grp].append(_ex)
assert len({ex for ex, _ in ALTERNATIVES.values()}) == len(ALTERNATIVES), "one alternative per exercise per grading"

_graded: dict[str, object] = {}  # grading group -> Graded, shared by the tests of that group


def _grading(group, grade_variant, solution_source):
    if group not in _graded:
        if group == "alternatives":
            replace = {}
            for ex, code in ALTERNATIVES.values():
                cell = SOLUTION_CELL[ex]
                ref = solution_source(PS, cell)
                src = swap_functions(ref, code)
                assert src != ref
                replace[cell] = src
        else:
            replace = {SOLUTION_CELL[ex]: edit(solution_source(PS, SOLUTION_CELL[ex]), *edits)
                       for grp, ex, edits, _ in BUGS.values() if grp == group}
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
    group, ex, _, must_fail = BUGS[variant]
    g = _grading(group, grade_variant, solution_source)
    assert set(must_fail) <= set(CELLS[ex])
    passed = [c for c in must_fail if g.scores[c] != 0]
    assert not passed, f"{variant} not caught by {passed}"
    assert g.total < g.max_total == 100


@pytest.mark.parametrize("group", sorted(_GROUP_EXERCISES))
def test_bug_gradings_leave_other_exercises_intact(group, grade_variant, solution_source):
    g = _grading(group, grade_variant, solution_source)
    untouched = [c for ex, cells in CELLS.items() if ex not in _GROUP_EXERCISES[group] for c in cells]
    lost = {c: g.messages.get(c) for c in untouched if g.scores[c] != g.max_scores[c]}
    assert not lost, f"grading {group}: reference exercises lost points {lost}"
