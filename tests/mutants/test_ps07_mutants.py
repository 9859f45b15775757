"""ps07 (information bottleneck): correct alternatives get full marks, plausible bugs lose the points of
the cells meant to catch them. Each grading runs the whole notebook (~6 s), so the six alternatives are
graded in one submission and bugs in exercises that do not call each other's functions share one
submission; every bug is still checked cell by cell (its cells lose everything, the other cells of its
exercise keep full marks)."""

from __future__ import annotations

import pytest
from variants import edit, swap_functions

pytestmark = pytest.mark.slow

PS = "ps07"

# solution cell of each exercise -> its graded test cells
EX = {
    "ex1_information": ["ex1_entropy_kl_values", "ex1_mi_invariants", "ex1_blahut_arimoto", "ex1_bernoulli_rd"],
    "ex2_iterative_ib": ["ex2_encoder_valid", "ex2_fixed_point", "ex2_lagrangian_monotone", "ex2_data_processing",
                         "ex2_limits"],
    "ex3_threshold": ["ex3_threshold_dsbs", "ex3_threshold_hessian", "ex3_transition_experiment"],
    "ex4_binning": ["ex4_binned_hand", "ex4_binned_bruteforce", "ex4_binned_edges", "ex4_saturation"],
    "ex5_kde": ["ex5_kde_limits", "ex5_kde_vs_monte_carlo", "ex5_kde_gaussian_limit"],
    "ex6_variational": ["ex6_gaussian_kl", "ex6_vib_loss", "ex6_vib_bounds_mi", "ex6_info_dropout_kl"],
}

# ------------------------------------------------------------------ correct alternatives
ALT_EX1 = '''
def entropy(p):
    # masked logarithm instead of scipy.special.entr
    p = np.asarray(p, dtype=float)
    return -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=-1)


def kl(p, q):
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    return (p * np.log(np.where(p > 0, p, 1.0) / np.where(p > 0, q, 1.0))).sum(axis=-1)


def mutual_information(p_xy):
    # I = KL(p(x,y) || p(x) p(y))
    p_xy = np.asarray(p_xy, dtype=float)
    return float(kl(p_xy.ravel(), np.outer(p_xy.sum(1), p_xy.sum(0)).ravel()))


def blahut_arimoto(p_x, d, s, n_iter):
    # loops over x, exponential domain with a per-row shift
    n, m = d.shape
    q = np.ones(m) / m
    for _ in range(n_iter):
        Q = np.empty((n, m))
        for x in range(n):
            w = q * np.exp(-s * (d[x] - d[x].min()))
            Q[x] = w / w.sum()
        q = Q.T @ p_x
    D = float(np.sum(p_x[:, None] * Q * d))
    R = float(sum(p_x[x] * kl(Q[x], q) for x in range(n)))
    return D, R


def bernoulli_rate_distortion(p, D):
    # a loop with math.log
    def hb(u):
        return 0.0 if u <= 0.0 or u >= 1.0 else -u * math.log(u) - (1 - u) * math.log(1 - u)

    D = np.asarray(D, dtype=float)
    out = np.zeros(D.shape)
    for i, dd in enumerate(D):
        if dd < min(p, 1 - p):
            out[i] = hb(p) - hb(dd)
    return out
'''

ALT_EX2 = '''
def iterative_ib(p_xy, beta, q0, n_iter):
    # torch, float64, softmax for the normalisation
    P = torch.as_tensor(np.asarray(p_xy, dtype=float))
    enc = torch.as_tensor(np.array(q0, dtype=float))
    px = P.sum(1)
    pyx = P / px[:, None]

    def mi(J):
        m = J.sum(1, keepdim=True) * J.sum(0, keepdim=True)
        return torch.where(J > 0, J * torch.log(torch.where(J > 0, J, 1.0) / m), 0.0).sum()

    def lagr(e):
        return float(mi(px[:, None] * e) - beta * mi(e.T @ P))

    hist = [lagr(enc)]
    for _ in range(n_iter):
        pt = px @ enc
        pyt = (enc.T @ P) / pt[:, None]
        dist = (pyx[:, None, :] * (torch.log(pyx[:, None, :]) - torch.log(pyt[None]))).sum(-1)
        enc = torch.softmax(torch.log(pt)[None, :] - beta * dist, dim=1)
        hist.append(lagr(enc))
    return enc.numpy(), np.array(hist)
'''

ALT_EX3 = '''
def ib_threshold(p_xy):
    # second eigenvalue of the operator f -> E[E[f(X)|Y] | X = x]
    p_xy = np.asarray(p_xy, dtype=float)
    px, py = p_xy.sum(1), p_xy.sum(0)
    T = (p_xy / px[:, None]) @ (p_xy / py[None, :]).T
    ev = np.sort(np.real(np.linalg.eigvals(T)))[::-1]
    rho2 = ev[1] if len(ev) > 1 else 0.0
    return math.inf if rho2 < 1e-12 else float(1.0 / rho2)


def estimate_ib_transition(p_xy, generator):
    # linear scan: the first beta at which a tiny perturbation grows over 30 updates
    p_xy = np.asarray(p_xy, dtype=float)
    u = 1e-4 * torch.randn(p_xy.shape[0], generator=generator, dtype=torch.float64).numpy()
    q0 = np.stack([0.5 + u, 0.5 - u], 1)
    px = p_xy.sum(1)
    ixt0 = mutual_information(px[:, None] * q0)
    for beta in np.arange(1.0, 30.0, 0.02):
        enc, _ = iterative_ib(p_xy, beta, q0, 30)
        if mutual_information(px[:, None] * enc) > ixt0:
            return float(beta)
    return math.inf
'''

ALT_EX4 = '''
def binned_mi(activations, labels, n_bins):
    # np.digitize on the interior edges and counting with dicts
    a = np.asarray(activations, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    if hi == lo:
        return 0.0, 0.0
    idx = np.digitize(a, np.linspace(lo, hi, n_bins + 1)[1:-1])
    N = a.shape[0]
    ct, cty, cy = {}, {}, {}
    for row, y in zip(map(tuple, idx), np.asarray(labels).tolist()):
        ct[row] = ct.get(row, 0) + 1
        cty[(row, y)] = cty.get((row, y), 0) + 1
        cy[y] = cy.get(y, 0) + 1
    h_t = -sum(c / N * math.log(c / N) for c in ct.values())
    i_ty = sum(c / N * math.log(c * N / (ct[t] * cy[y])) for (t, y), c in cty.items())
    return h_t, i_ty
'''

ALT_EX5 = '''
def kde_mi_upper(h, noise_var):
    # torch.cdist and the log of a mean of exponentials
    d2 = torch.cdist(h, h) ** 2
    return -torch.log(torch.exp(-d2 / (2 * noise_var)).mean(dim=1)).mean()
'''

ALT_EX6 = '''
def gaussian_kl(mu, logvar):
    # the library route
    from torch.distributions import Normal, kl_divergence
    return kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)


def vib_loss(mu, logvar, logits, y, beta):
    logp = torch.log_softmax(logits, dim=1)
    return -logp[torch.arange(len(y)), y].mean() + beta * gaussian_kl(mu, logvar).mean()


def info_dropout_kl(log_f, alpha, mu0, sigma0):
    from torch.distributions import LogNormal, kl_divergence
    return kl_divergence(LogNormal(log_f, alpha),
                         LogNormal(torch.full_like(log_f, mu0), torch.full_like(log_f, sigma0)))
'''

# one submission replaces every solution cell by a correct alternative (six alternatives, one grading)
ALTERNATIVES = {
    "ex1_information": ALT_EX1,  # masked logarithms, MI as a KL, Blahut-Arimoto with loops, R(D) with math.log
    "ex2_iterative_ib": ALT_EX2,  # torch and softmax
    "ex3_threshold": ALT_EX3,  # eigenvalues of E[E[.|Y]|X]; a linear scan measuring growth over 30 updates
    "ex4_binning": ALT_EX4,  # np.digitize and dictionaries
    "ex5_kde": ALT_EX5,  # torch.cdist, log of a mean
    "ex6_variational": ALT_EX6,  # torch.distributions
}


def test_correct_alternatives_full_marks(grade_variant, solution_source):
    replace = {}
    for cell, code in ALTERNATIVES.items():
        ref = solution_source(PS, cell)
        replace[cell] = swap_functions(ref, code)
        assert replace[cell] != ref
    g = grade_variant(PS, replace)
    for t in g.scores:
        assert g.scores[t] == g.max_scores[t], f"{t} {g.scores[t]}/{g.max_scores[t]}: {g.messages.get(t)}"
    assert g.total == 100


# ------------------------------------------------------------------ plausible bugs
# name -> (solution cell, [(old, new), ...], test cells of that exercise that must score 0); every other
# cell of the same exercise must keep its full marks.
BUGS = {
    # KL(q || p) instead of KL(p || q)
    "ex1_kl_arguments_swapped": ("ex1_information", [
        ("rel_entr(np.asarray(p, dtype=float), np.asarray(q, dtype=float))",
         "rel_entr(np.asarray(q, dtype=float), np.asarray(p, dtype=float))")],
        ["ex1_entropy_kl_values", "ex1_blahut_arimoto"]),
    # the same marginal twice: I = 2 H(X) - H(X, Y)
    "ex1_mi_same_marginal_twice": ("ex1_information", [
        ("entropy(p_xy.sum(axis=1)) + entropy(p_xy.sum(axis=0))", "entropy(p_xy.sum(axis=1)) + entropy(p_xy.sum(axis=1))")],
        ["ex1_mi_invariants"]),
    # forgets that R(D) = 0 beyond min(p, 1 - p)
    "ex1_rd_no_zero_region": ("ex1_information", [
        ("return np.where(D < Dmax, hb_p - hb_D, 0.0)", "return hb_p - entropy(np.stack([D, 1 - D], axis=-1))")],
        ["ex1_bernoulli_rd"]),
    # Blahut-Arimoto without the q-update (q stays uniform)
    "ex1_ba_output_marginal_not_updated": ("ex1_information", [
        ("        q = p_x @ Q\n", "        pass\n")],
        ["ex1_blahut_arimoto"]),
    # wrong sign of beta in the exponent
    "ex2_beta_sign": ("ex2_iterative_ib", [
        ("logits = np.log(q_t[live])[None, :] - beta * dist", "logits = np.log(q_t[live])[None, :] + beta * dist")],
        ["ex2_fixed_point", "ex2_lagrangian_monotone", "ex2_data_processing", "ex2_limits"]),
    # the prior p(t) left out of the update
    "ex2_missing_cluster_prior": ("ex2_iterative_ib", [
        ("logits = np.log(q_t[live])[None, :] - beta * dist", "logits = -beta * dist")],
        ["ex2_fixed_point", "ex2_lagrangian_monotone"]),
    # history without the value of q0
    "ex2_history_misses_initial_value": ("ex2_iterative_ib", [
        ("    for it in range(n_iter + 1):\n        hist.append(",
         "    for it in range(n_iter + 1):\n        if it > 0:\n            hist.append(")],
        ["ex2_encoder_valid", "ex2_lagrangian_monotone"]),
    # exponentiates without subtracting the row maximum: underflow to 0/0 at large beta
    "ex2_no_logsumexp": ("ex2_iterative_ib", [
        ("        logits -= logits.max(axis=1, keepdims=True)\n", "")],
        ["ex2_limits"]),
    # the largest singular value (always 1) instead of the second
    "ex3_first_singular_value": ("ex3_threshold", [
        ("rho2 = sv[1] ** 2 if len(sv) > 1 else 0.0", "rho2 = sv[0] ** 2")],
        ["ex3_threshold_dsbs", "ex3_threshold_hessian"]),
    # 1 / rho instead of 1 / rho^2
    "ex3_rho_not_squared": ("ex3_threshold", [
        ("rho2 = sv[1] ** 2 if len(sv) > 1 else 0.0", "rho2 = sv[1] if len(sv) > 1 else 0.0")],
        ["ex3_threshold_dsbs", "ex3_threshold_hessian"]),
    # SVD of p(x, y) itself, without the normalisation by sqrt(p(x) p(y))
    "ex3_unnormalised_matrix": ("ex3_threshold", [
        ("B = p_xy / np.sqrt(np.outer(p_xy.sum(axis=1), p_xy.sum(axis=0)))", "B = p_xy")],
        ["ex3_threshold_dsbs", "ex3_threshold_hessian"]),
    # too few iterations near the threshold: the estimate is biased upwards
    "ex3_experiment_too_short": ("ex3_threshold", [
        ("enc, _ = iterative_ib(p_xy, beta, q0, 400)", "enc, _ = iterative_ib(p_xy, beta, q0, 10)")],
        ["ex3_transition_experiment"]),
    # bins spanning each unit's own range instead of the layer's
    "ex4_per_unit_range": ("ex4_binning", [
        ("lo, hi = a.min(), a.max()", "lo, hi = a.min(axis=0), a.max(axis=0)"),
        ("if hi > lo:", "if True:"),
        ("np.floor((a - lo) / (hi - lo) * n_bins)", "np.floor((a - lo) / np.where(hi > lo, hi - lo, 1.0) * n_bins)")],
        ["ex4_binned_bruteforce"]),
    # the maximum gets a bin of its own
    "ex4_max_not_clipped": ("ex4_binning", [
        ("idx = np.clip(np.floor((a - lo) / (hi - lo) * n_bins), 0, n_bins - 1).astype(np.int64)",
         "idx = np.floor((a - lo) / (hi - lo) * n_bins).astype(np.int64)")],
        ["ex4_binned_hand", "ex4_binned_bruteforce", "ex4_binned_edges"]),
    # H(Y) returned instead of I(T;Y)
    "ex4_returns_label_entropy": ("ex4_binning", [
        ("return float(entropy(joint.sum(axis=1))), mutual_information(joint)",
         "return float(entropy(joint.sum(axis=1))), float(entropy(joint.sum(axis=0)))")],
        ["ex4_binned_bruteforce", "ex4_binned_edges"]),
    # Bhattacharyya distance (a lower bound) instead of the KL divergence
    "ex5_bhattacharyya_instead_of_kl": ("ex5_kde", [
        ("lse = torch.logsumexp(-d2 / (2 * noise_var), dim=1)", "lse = torch.logsumexp(-d2 / (8 * noise_var), dim=1)")],
        ["ex5_kde_vs_monte_carlo", "ex5_kde_gaussian_limit"]),
    # KL between the Gaussians without the factor 1/2
    "ex5_kl_missing_half": ("ex5_kde", [
        ("lse = torch.logsumexp(-d2 / (2 * noise_var), dim=1)", "lse = torch.logsumexp(-d2 / noise_var, dim=1)")],
        ["ex5_kde_gaussian_limit"]),
    # the mixture weights 1/N forgotten inside the logarithm
    "ex5_missing_log_n": ("ex5_kde", [
        ("return -(lse - np.log(N)).mean()", "return -lse.mean()")],
        ["ex5_kde_limits", "ex5_kde_vs_monte_carlo", "ex5_kde_gaussian_limit"]),
    # logvar read as the log standard deviation
    "ex6_logvar_as_log_std": ("ex6_variational", [
        ("return 0.5 * (mu * mu + logvar.exp() - 1 - logvar).sum(dim=-1)",
         "return 0.5 * (mu * mu + (2 * logvar).exp() - 1 - 2 * logvar).sum(dim=-1)")],
        ["ex6_gaussian_kl", "ex6_vib_loss", "ex6_vib_bounds_mi"]),
    # KL summed over the batch instead of averaged
    "ex6_vib_kl_summed": ("ex6_variational", [
        ("beta * gaussian_kl(mu, logvar).mean()", "beta * gaussian_kl(mu, logvar).sum()")],
        ["ex6_vib_loss"]),
    # the constant -1/2 of the Gaussian KL forgotten
    "ex6_info_dropout_missing_constant": ("ex6_variational", [
        ("/ (2 * sigma0**2) - 0.5", "/ (2 * sigma0**2)")],
        ["ex6_info_dropout_kl"]),
}

# bugs graded in one submission touch exercises that do not call each other's functions
# (ex2 and ex4 call ex1's functions; ex3's experiment calls ex2's)
BUG_GROUPS = [
    ["ex1_kl_arguments_swapped", "ex5_bhattacharyya_instead_of_kl", "ex6_vib_kl_summed"],
    ["ex1_mi_same_marginal_twice", "ex5_kl_missing_half", "ex6_info_dropout_missing_constant"],
    ["ex1_rd_no_zero_region", "ex4_max_not_clipped", "ex6_logvar_as_log_std", "ex3_experiment_too_short"],
    ["ex1_ba_output_marginal_not_updated", "ex4_returns_label_entropy", "ex5_missing_log_n"],
    ["ex2_beta_sign", "ex4_per_unit_range"],
    ["ex2_missing_cluster_prior", "ex3_first_singular_value"],
    ["ex2_history_misses_initial_value", "ex3_rho_not_squared"],
    ["ex2_no_logsumexp", "ex3_unnormalised_matrix"],
]


def test_every_bug_is_graded():
    graded = [b for group in BUG_GROUPS for b in group]
    assert sorted(graded) == sorted(BUGS), "each bug in exactly one group"
    for group in BUG_GROUPS:
        cells = [BUGS[b][0] for b in group]
        assert len(set(cells)) == len(cells), f"two bugs of one exercise in one submission: {group}"


@pytest.mark.parametrize("group", BUG_GROUPS, ids=["+".join(g) for g in BUG_GROUPS])
def test_plausible_bugs_lose_points(group, grade_variant, solution_source):
    replace = {}
    for name in group:
        cell, pairs, _ = BUGS[name]
        replace[cell] = edit(solution_source(PS, cell), *pairs)
    g = grade_variant(PS, replace)
    for name in group:
        cell, _, must_fail = BUGS[name]
        for t in EX[cell]:
            if t in must_fail:
                assert g.scores[t] == 0, f"{name}: {t} kept {g.scores[t]}/{g.max_scores[t]}"
            else:
                assert g.scores[t] == g.max_scores[t], \
                    f"{name}: {t} lost points ({g.scores[t]}/{g.max_scores[t]}): {g.messages.get(t)}"
    assert g.total < 100
