"""ps03 (dropout): correct alternatives get full marks on their exercise, plausible bugs lose the
points of the cells meant to catch them. Each variant grades the whole notebook (~2-3 s)."""

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
    "ex4_ensemble": ["ex4_ensemble_probs", "ex4_weight_scaling", "ex4_nwgm_values", "ex4_nwgm_sigmoid"],
    "ex5_matrix_factorization": ["ex5_expected_loss_enumeration", "ex5_equalize_products",
                                 "ex5_equalize_nuclear", "ex5_closed_form_hand", "ex5_closed_form_cvxpy",
                                 "ex5_closed_form_rank_r", "ex5_train_sgd_step", "ex5_train_reaches_optimum"],
    "ex6_two_layer": ["ex6_loss_values", "ex6_regularizer_enumeration", "ex6_matrix_completion"],
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

ALTERNATIVES = {
    "ex1_where_masked_fill": ("ex1_dropout_layer", ALT_EX1),
    "ex2_expanded_augmented_lstsq": ("ex2_linreg", ALT_EX2),
    "ex4_reversed_mask_order_logit_nwgm": ("ex4_ensemble", ALT_EX4),
    "ex5_enumeration_rank_search_autograd_sgd": ("ex5_matrix_factorization", ALT_EX5),
}


@pytest.mark.parametrize("name", list(ALTERNATIVES))
def test_correct_alternative_full_marks(name, grade_variant, solution_source):
    cell, code = ALTERNATIVES[name]
    ref = solution_source(PS, cell)
    src = swap_functions(ref, code)
    assert src != ref
    g = grade_variant(PS, {cell: src})
    for t in EX[cell]:
        assert g.scores[t] == g.max_scores[t], f"{name}: {t} {g.scores[t]}/{g.max_scores[t]}: {g.messages.get(t)}"


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
}


@pytest.mark.parametrize("name", list(BUGS))
def test_plausible_bug_loses_points(name, grade_variant, solution_source):
    cell, pairs, must_fail = BUGS[name]
    g = grade_variant(PS, {cell: edit(solution_source(PS, cell), *pairs)})
    for t in must_fail:
        assert g.scores[t] == 0, f"{name}: {t} kept {g.scores[t]}/{g.max_scores[t]}"
    assert g.total < 100, f"{name}: total {g.total}"
