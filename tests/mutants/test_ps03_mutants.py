"""ps03 (dropout): correct alternatives get full marks on their exercise (loops vs vectorised, torch.where,
enumeration, another algorithm such as Newton's method, the library route through sklearn or
torch.nn.functional, float32 where the docstring accepts it), plausible bugs lose the points of the
cells meant to catch them. Each variant grades the whole notebook."""

from __future__ import annotations

import pytest
from variants import edit, swap_functions

pytestmark = pytest.mark.slow

PS = "ps03"

# solution cell of each exercise -> its graded test cells
EX = {
    "ex1_dropout_layer": ["ex1_forward_hand", "ex1_matches_torch_dropout", "ex1_expectation",
                          "ex1_backward_autograd"],
    "ex2_linreg": ["ex2_objective_enumeration", "ex2_solution_stationary", "ex2_solution_ridge"],
    "ex3_logistic": ["ex3_excess_hand", "ex3_penalty_values", "ex3_ratio_to_one"],
    "ex3_rare_fit": ["ex3_fit_stationary", "ex3_rare_features"],
    "ex4_ensemble": ["ex4_ensemble_probs", "ex4_weight_scaling", "ex4_nwgm_values", "ex4_nwgm_sigmoid"],
    "ex5_matrix_factorization": ["ex5_expected_loss_enumeration", "ex5_equalize_products",
                                 "ex5_equalize_nuclear", "ex5_closed_form_hand", "ex5_closed_form_cvxpy",
                                 "ex5_closed_form_rank_r", "ex5_train_sgd_step", "ex5_train_reaches_optimum"],
    "ex6_two_layer": ["ex6_loss_values", "ex6_regularizer_enumeration", "ex6_matrix_completion"],
    "ex7_train": ["ex7_train_steps", "ex7_explicit_reproduces_dropout"],
}


# ------------------------------------------------------------------ correct alternatives
ALT_EX1 = '''
def dropout_forward(x, p, mask):
    # torch.where instead of a multiply; x's dtype (float32 included) is kept
    return torch.where(mask, x / p, torch.zeros((), dtype=x.dtype))

def dropout_backward(dout, p, mask):
    return dout.masked_fill(~mask, 0.0) * (1.0 / p)
'''

ALT_EX2 = '''
def dropout_linreg_objective(X, y, w, p):
    # expanded quadratic form
    G = X.T @ X
    return y @ y - 2 * p * (y @ X @ w) + p * p * (w @ G @ w) + p * (1 - p) * (torch.diagonal(G) @ (w * w))

def dropout_linreg_solution(X, y, p):
    # least squares on the data augmented with sqrt(p (1-p) diag(X^T X)) rows
    g = torch.sqrt(torch.diagonal(X.T @ X))
    Xa = torch.cat([X * p, torch.diag(g) * (p * (1 - p)) ** 0.5])
    ya = torch.cat([y, torch.zeros(X.shape[1], dtype=X.dtype)])
    return torch.linalg.lstsq(Xa, ya, driver="gelsd").solution
'''

ALT_EX4 = '''
def dropout_ensemble(w, x, p):
    # masks in reverse binary order, built with a loop
    n = len(w)
    S, P = [], []
    for k in range(2 ** n - 1, -1, -1):
        m = torch.tensor([(k >> i) & 1 for i in range(n)], dtype=w.dtype)
        S.append((w * m * x).sum())
        P.append(p ** m.sum() * (1 - p) ** (n - m.sum()))
    return torch.stack(S), torch.stack(P)

def nwgm(outputs, probs):
    # NWGM = sigmoid(E[logit O])
    return torch.sigmoid((probs * torch.logit(outputs)).sum())
'''

ALT_EX5 = '''
def dropout_mf_expected_loss(Y, U, V, theta):
    # the expectation by enumerating all 2^r column masks
    tot = torch.zeros((), dtype=Y.dtype)
    r = U.shape[1]
    for b in itertools.product([0.0, 1.0], repeat=r):
        bb = torch.tensor(b, dtype=Y.dtype)
        pr = theta ** bb.sum() * (1 - theta) ** (r - bb.sum())
        tot = tot + pr * ((Y - U @ torch.diag(bb) @ V.T / theta) ** 2).sum()
    return tot

def dropout_mf_closed_form(Y, lam, r):
    # SVD of Y^T; try every rank k <= r and keep the best objective value
    A, s, Bt = torch.linalg.svd(Y.T, full_matrices=False)
    best = None
    for k in range(0, min(r, len(s)) + 1):
        S = s[:k].sum() / (1 + lam * k / r)
        sk = s[:k] - lam / r * S
        if k and sk.min() <= 0:
            continue
        obj = ((s[:k] - sk) ** 2).sum() + (s[k:] ** 2).sum() + lam / r * sk.sum() ** 2
        if best is None or obj < best[0]:
            best = (obj, k, sk)
    _, k, sk = best
    return ((A[:, :k] * sk) @ Bt[:k]).T

def train_dropout_mf(Y, U0, V0, theta, lrs, masks):
    # autograd + torch.optim.SGD with the step size set per step
    U, V = U0.clone().requires_grad_(True), V0.clone().requires_grad_(True)
    opt = torch.optim.SGD([U, V], lr=1.0)
    P = [U0.norm(dim=0) * V0.norm(dim=0)]
    for t in range(len(lrs)):
        opt.param_groups[0]["lr"] = float(lrs[t])
        opt.zero_grad()
        ((Y - U @ torch.diag(masks[t].to(Y.dtype) / theta) @ V.T) ** 2).sum().backward()
        opt.step()
        P.append((U.norm(dim=0) * V.norm(dim=0)).detach())
    return U.detach(), V.detach(), torch.stack(P)
'''

ALT_EX3 = '''
def logistic_dropout_excess(X, beta, delta):
    # a Python loop over the masks, log(1 + e^s) written as logaddexp
    N, D = X.shape
    tot = torch.zeros((), dtype=X.dtype)
    for z in itertools.product([0.0, 1.0], repeat=D):
        z = torch.tensor(z, dtype=X.dtype)
        pr = (1 - delta) ** float(z.sum()) * delta ** float(D - z.sum())
        s = X @ (z * beta) / (1 - delta)
        tot = tot + pr * torch.logaddexp(torch.zeros_like(s), s).sum()
    s0 = X @ beta
    return tot - torch.logaddexp(torch.zeros_like(s0), s0).sum()

def wager_penalty(X, beta, delta):
    # per-feature weights c_j, then sum_j c_j beta_j^2
    s = X @ beta
    curv = torch.exp(-F.softplus(s) - F.softplus(-s))  # sigma(s) (1 - sigma(s)), stably
    c = delta / (2 * (1 - delta)) * (curv[:, None] * X**2).sum(0)
    return (c * beta**2).sum()
'''

ALT_EX3_FIT_NEWTON = '''
def fit_dropout_logistic(X, y, delta, masks, lam):
    # damped Newton's method on the stacked noised copies, in torch
    M, N, D = masks.shape
    Z = (masks.double() * X / (1 - delta)).reshape(M * N, D)
    yy = y.repeat(M)
    b = torch.zeros(D, dtype=torch.float64)

    def J(b):
        s = Z @ b
        return (torch.logaddexp(torch.zeros_like(s), s) - yy * s).sum() / M + lam / 2 * (b @ b)

    for _ in range(200):
        s = Z @ b
        pr = torch.sigmoid(s)
        g = Z.T @ (pr - yy) / M + lam * b
        if g.abs().max() < 1e-11:
            break
        Hm = (Z * (pr * (1 - pr))[:, None]).T @ Z / M + lam * torch.eye(D, dtype=torch.float64)
        step = torch.linalg.solve(Hm, g)
        t = 1.0
        while J(b - t * step) > J(b) - 0.25 * t * (g @ step) and t > 1e-10:
            t /= 2
        b = b - t * step
    return b
'''

ALT_EX3_FIT_SKLEARN = '''
def fit_dropout_logistic(X, y, delta, masks, lam):
    # the library route: sklearn's LogisticRegression on the stacked copies (C = 1 / (lam M))
    from sklearn.linear_model import LogisticRegression
    M = masks.shape[0]
    Z = (masks.to(X.dtype) * X / (1 - delta)).reshape(-1, X.shape[1]).numpy()
    yy = y.repeat(M).numpy()
    if lam > 0:
        clf = LogisticRegression(C=1 / (lam * M), fit_intercept=False, tol=1e-12, max_iter=100000)
    else:
        clf = LogisticRegression(penalty=None, fit_intercept=False, tol=1e-12, max_iter=100000)
    return torch.tensor(clf.fit(Z, yy).coef_[0])
'''

ALT_EX6 = '''
def dropout_net_loss(U, W, X, Y, p, mask, activation):
    # torch.nn.functional building blocks
    Hd = activation(F.linear(X, W)) * mask / p
    return F.mse_loss(F.linear(Hd, U), Y, reduction="sum") / X.shape[0]

def explicit_regularizer(U, W, X, p, activation):
    # einsum over hidden units and samples
    A = activation(torch.einsum("hd,nd->nh", W, X))
    return (1 - p) / p * torch.einsum("kh,nh->", U**2, A**2) / X.shape[0]
'''

ALT_EX7_MANUAL_FLOAT32 = '''
def train_two_layer(U0, W0, X, Y, p, lrs, masks, activation, mode):
    # backpropagation by hand, in float32 (the docstring accepts float32 results)
    f = torch.float32
    U, W, X, Y = U0.to(f).clone(), W0.to(f).clone(), X.to(f), Y.to(f)
    N = X.shape[0]
    for t in range(len(lrs)):
        Z = (X @ W.T).requires_grad_(True)
        A = activation(Z)
        (dA_dZ,) = torch.autograd.grad(A.sum(), Z)  # elementwise derivative of the activation
        A, Z = A.detach(), Z.detach()
        m = masks[t].to(f) / p if mode == "dropout" else torch.ones_like(A)
        R = Y - (A * m) @ U.T
        gU = -2 / N * R.T @ (A * m)
        gA = -2 / N * (R @ U) * m
        if mode == "explicit":
            c = (1 - p) / p
            gU = gU + 2 * c * U * (A**2).mean(0)
            gA = gA + 2 * c * (U**2).sum(0) * A / N
        gW = (gA * dA_dZ).T @ X
        lr = float(lrs[t])
        U, W = U - lr * gU, W - lr * gW
    return U, W
'''

ALTERNATIVES = {
    "ex1_where_masked_fill": ("ex1_dropout_layer", ALT_EX1),
    "ex2_expanded_augmented_lstsq": ("ex2_linreg", ALT_EX2),
    "ex4_reversed_mask_order_logit_nwgm": ("ex4_ensemble", ALT_EX4),
    "ex5_enumeration_rank_search_autograd_sgd": ("ex5_matrix_factorization", ALT_EX5),
    "ex3_loop_logaddexp_feature_weights": ("ex3_logistic", ALT_EX3),
    "ex3_fit_newton": ("ex3_rare_fit", ALT_EX3_FIT_NEWTON),
    "ex3_fit_sklearn_library_route": ("ex3_rare_fit", ALT_EX3_FIT_SKLEARN),
    "ex6_functional_einsum": ("ex6_two_layer", ALT_EX6),
    "ex7_manual_backprop_float32": ("ex7_train", ALT_EX7_MANUAL_FLOAT32),
}


def _groups(items):
    """Pack variants into as few grading runs as possible, at most one variant per solution cell in a run
    (solution cells are independent: a variant of one changes no other exercise's score)."""
    groups: list[list[tuple[str, str]]] = []
    for name, cell in items:
        for group in groups:
            if cell not in {c for _, c in group}:
                group.append((name, cell))
                break
        else:
            groups.append([(name, cell)])
    return groups


def _untouched_full_marks(g, replaced):
    return [f"{t} {g.scores[t]}/{g.max_scores[t]}: {g.messages.get(t)}" for cell, tests in EX.items()
            if cell not in replaced for t in tests if g.scores[t] != g.max_scores[t]]


ALT_GROUPS = _groups([(name, cell) for name, (cell, _) in ALTERNATIVES.items()])


@pytest.mark.parametrize("group", ALT_GROUPS, ids=lambda gr: "+".join(n for n, _ in gr))
def test_correct_alternatives_full_marks(group, grade_variant, solution_source):
    replace = {}
    for name, cell in group:
        ref = solution_source(PS, cell)
        src = swap_functions(ref, ALTERNATIVES[name][1])
        assert src != ref, name
        replace[cell] = src
    g = grade_variant(PS, replace)
    lost = [f"{name}: {t} {g.scores[t]}/{g.max_scores[t]}: {g.messages.get(t)}"
            for name, cell in group for t in EX[cell] if g.scores[t] != g.max_scores[t]]
    assert not lost, lost
    assert g.total == 100, _untouched_full_marks(g, replace)


# ------------------------------------------------------------------ plausible bugs
# name -> (solution cell, [(old, new), ...], test cells that must score 0)
BUGS = {
    # missing factor: non-inverted dropout (no 1/p) in forward and backward
    "ex1_missing_inverse_p": ("ex1_dropout_layer", [
        ("return x * mask.to(x.dtype) / p", "return x * mask.to(x.dtype)"),
        ("return dout * mask.to(dout.dtype) / p", "return dout * mask.to(dout.dtype)")],
        ["ex1_forward_hand", "ex1_matches_torch_dropout", "ex1_expectation", "ex1_backward_autograd"]),
    # returns its input: backward passes the gradient through unmasked
    "ex1_backward_returns_input": ("ex1_dropout_layer", [
        ("return dout * mask.to(dout.dtype) / p", "return dout")],
        ["ex1_backward_autograd"]),
    # ridge with the identity instead of diag(X^T X)
    "ex2_identity_ridge": ("ex2_linreg", [
        ("torch.diag(torch.diagonal(G))", "torch.eye(G.shape[0], dtype=G.dtype)")],
        ["ex2_solution_stationary", "ex2_solution_ridge"]),
    # missing factor 1/2 in Wager's quadratic penalty
    "ex3_penalty_missing_half": ("ex3_logistic", [
        ("return 0.5 * delta / (1 - delta)", "return delta / (1 - delta)")],
        ["ex3_penalty_values", "ex3_ratio_to_one"]),
    # delta read as the keep probability (drop/keep swapped)
    "ex4_keep_drop_swapped": ("ex4_ensemble", [
        ("probs = p**k * (1 - p) ** (n - k)", "probs = (1 - p)**k * p ** (n - k)")],
        # ex4_ensemble_probs compares the *sorted* probabilities, a multiset symmetric in p <-> 1-p,
        # so it cannot see this swap; the law of S (weight scaling) and the NWGM identity do
        ["ex4_weight_scaling", "ex4_nwgm_sigmoid"]),
    # lambda not divided by r in the closed form (penalty lam ||M||_*^2 instead of lam/r)
    "ex5_closed_form_lam_not_over_r": ("ex5_matrix_factorization", [
        ("if s[j - 1] > lam * s[:j].sum() / (r + lam * j):", "if s[j - 1] > lam * s[:j].sum() / (1 + lam * j):"),
        ("tau = lam * s[:rho].sum() / (r + lam * rho)", "tau = lam * s[:rho].sum() / (1 + lam * rho)")],
        ["ex5_closed_form_hand", "ex5_closed_form_cvxpy", "ex5_closed_form_rank_r"]),
    # training without the 1/theta rescaling of the mask
    "ex5_train_missing_inverse_theta": ("ex5_matrix_factorization", [
        ("dm = masks[t].to(Y.dtype) / theta", "dm = masks[t].to(Y.dtype)")],
        ["ex5_train_sgd_step", "ex5_train_reaches_optimum"]),
    # transpose: u_j taken from the rows of U (K outputs) instead of its columns (H hidden units)
    "ex6_regularizer_rows_of_U": ("ex6_two_layer", [
        ("((U * U).sum(dim=0) * (Hid", "((U * U).sum(dim=1).sum() / U.shape[1] * (Hid")],
        ["ex6_regularizer_enumeration", "ex6_matrix_completion"]),
    # square of the mean activation instead of the mean of the squares (E[a]^2 for E[a^2])
    "ex6_regularizer_square_of_mean": ("ex6_two_layer", [
        ("(Hid * Hid).mean(dim=0)).sum()", "Hid.mean(dim=0) ** 2).sum()")],
        ["ex6_regularizer_enumeration"]),
    # keep and drop swapped in Wager's penalty: (1 - delta)/delta
    "ex3_penalty_keep_drop_swapped": ("ex3_logistic", [
        ("return 0.5 * delta / (1 - delta)", "return 0.5 * (1 - delta) / delta")],
        ["ex3_penalty_values", "ex3_ratio_to_one"]),
    # noised copies scaled by 1/delta (the drop probability) instead of 1/(1 - delta)
    "ex3_fit_scaled_by_drop_probability": ("ex3_rare_fit", [
        ("Xt = (masks.to(X.dtype) * X / (1 - delta))", "Xt = (masks.to(X.dtype) * X / delta)")],
        ["ex3_fit_stationary"]),
    # the ridge term forgotten in the gradient (objective and gradient without lam)
    "ex3_fit_ignores_lam": ("ex3_rare_fit", [
        (" + 0.5 * lam * (b @ b)", ""), (" / M + lam * b", " / M")],
        ["ex3_fit_stationary"]),
    # dropout step without the 1/p rescaling of the kept units
    "ex7_dropout_missing_inverse_p": ("ex7_train", [
        ("R = Y - (Hid * masks[t].to(X.dtype) / p) @ U.T", "R = Y - (Hid * masks[t].to(X.dtype)) @ U.T")],
        ["ex7_train_steps"]),
    # one mask for the whole batch (row 0) instead of one per sample
    "ex7_dropout_one_mask_per_batch": ("ex7_train", [
        ("(Hid * masks[t].to(X.dtype) / p)", "(Hid * masks[t][0].to(X.dtype) / p)")],
        ["ex7_train_steps"]),
    # "explicit" mode forgets the regularizer: it is plain training
    "ex7_explicit_without_regularizer": ("ex7_train", [
        ("loss = loss + (1 - p) / p * ((U * U).sum(dim=0) * (Hid * Hid).mean(dim=0)).sum()", "pass")],
        ["ex7_train_steps", "ex7_explicit_reproduces_dropout"]),
    # regularizer summed over samples instead of averaged (N times too strong)
    "ex7_regularizer_sum_over_samples": ("ex7_train", [
        ("(Hid * Hid).mean(dim=0)).sum()", "(Hid * Hid).sum(dim=0)).sum()")],
        ["ex7_train_steps", "ex7_explicit_reproduces_dropout"]),
}


BUG_GROUPS = _groups([(name, cell) for name, (cell, _, _) in BUGS.items()])


@pytest.mark.parametrize("group", BUG_GROUPS, ids=lambda gr: "+".join(n for n, _ in gr))
def test_plausible_bugs_lose_points(group, grade_variant, solution_source):
    replace = {cell: edit(solution_source(PS, cell), *BUGS[name][1]) for name, cell in group}
    g = grade_variant(PS, replace)
    kept = [f"{name}: {t} kept {g.scores[t]}/{g.max_scores[t]}"
            for name, cell in group for t in BUGS[name][2] if g.scores[t] != 0]
    assert not kept, kept
    # no other exercise is affected: the bugs lose only points of their own exercises
    assert not _untouched_full_marks(g, replace), _untouched_full_marks(g, replace)
