"""ps01 mutation check: correct alternative implementations get full marks on their exercises'
graded cells, plausible bugs lose the points of the cells meant to catch them.

Every grading runs the whole notebook (~10 s), so alternatives that touch different solution cells
are graded together (two gradings), and so are bugs in different solution cells (four gradings):
each bug must zero its own cells, and every cell of a solution cell that no bug of the grading
touched must keep its full marks."""

from __future__ import annotations

import pytest
from variants import edit, swap_functions

pytestmark = pytest.mark.slow

PS = "ps01"

EXERCISE_CELLS = {
    "ex1_relu_interpolant": ["ex1_hat_function", "ex1_matches_interp_inside", "ex1_constant_outside"],
    "ex1_error_bound_solution": ["ex1_error_bound"],
    "ex2_optimizers": ["ex2_momentum_matches_torch", "ex2_nesterov_matches_torch", "ex2_adagrad_matches_torch",
                       "ex2_rmsprop_matches_torch", "ex2_adam_matches_torch"],
    "ex3_backprop": ["ex3_forward_matches_torch", "ex3_loss_value", "ex3_output_layer_grads",
                     "ex3_hidden_layer_grads", "ex3_numerical_gradient_centred"],
    "ex4_linear_autoencoder": ["ex4_principal_subspace", "ex4_autoencoder_spans_pca", "ex4_reconstruction_error"],
    "ex4_arc_solution": ["ex4_arc_pca_error"],
    "ex4_kramer": ["ex4_autoassociative_forward", "ex4_nonlinear_beats_pca"],
    "ex5_conv_residual": ["ex5_conv2d_matches_torch", "ex5_conv2d_stride_padding", "ex5_residual_block"],
    "ex5_deep_nets": ["ex5_deep_net_forward", "ex5_train_deep_net", "ex5_degradation"],
    "ex6_attention": ["ex6_attention_matches_torch", "ex6_attention_mask", "ex6_positional_encoding"],
    "ex6_pe_shift_solution": ["ex6_pe_shift"],
    "ex7_superresolution": ["ex7_pixel_shuffle_matches_torch", "ex7_psnr"],
    "ex7_expected_psnr_solution": ["ex7_expected_psnr"],
}
# cells of one solution cell that also depend on another one (residual_block is used by the deep networks)
DEPENDS = {"ex5_deep_nets": {"ex5_conv_residual"}}


# --------------------------------------------------------------------------- correct alternatives
OK = {
    # units relu(t_j - x) anchored at the right end, built in a loop, plus two dead units (H = K + 2)
    "ok_ex1_reflected_units_loop": {"ex1_relu_interpolant": '''
def relu_interpolant(knots, values):
    knots = np.asarray(knots, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    w, b, a = [0.0, 0.0], [-1.0, -2.0], [5.0, -3.0]  # relu(-1), relu(-2): never active
    right = 0.0  # slope right of the current knot
    for j in range(len(knots) - 1, -1, -1):
        left = (values[j] - values[j - 1]) / (knots[j] - knots[j - 1]) if j > 0 else 0.0
        w.append(-1.0)
        b.append(knots[j])
        a.append(right - left)  # d/dx relu(t - x) = -1 left of t
        right = left
    return np.array(w), np.array(b), np.array(a), float(values[-1])
''', "ex1_error_bound_solution": '''
def interpolation_error_bound(knots, curvature):
    # a Python loop over the intervals; (h / 2)^2 / 2 = h^2 / 8
    h = max(b - a for a, b in zip(knots[:-1], knots[1:]))
    return 0.5 * curvature * (h / 2) ** 2
'''},
    # in-place torch arithmetic on clones, torch.optim's own formulation of each update
    "ok_ex2_inplace_torch_ops": {"ex2_optimizers": '''
def momentum_step(theta, grad, v, lr, gamma):
    v = v.clone().mul_(gamma).add_(grad, alpha=lr)
    return theta.clone().sub_(v), v

def nesterov_step(theta, grad, buf, lr, gamma):
    buf = buf.clone().mul_(gamma).add_(grad)
    return theta.clone().add_(grad.add(buf, alpha=gamma), alpha=-lr), buf

def adagrad_step(theta, grad, G, lr, eps):
    G = G.clone().addcmul_(grad, grad, value=1.0)
    return theta.clone().addcdiv_(grad, G.sqrt().add_(eps), value=-lr), G

def rmsprop_step(theta, grad, Eg2, lr, alpha, eps):
    Eg2 = Eg2.clone().mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
    return theta.clone().addcdiv_(grad, Eg2.sqrt().add_(eps), value=-lr), Eg2

def adam_step(theta, grad, m, v, t, lr, beta1, beta2, eps):
    m = m.clone().mul_(beta1).add_(grad, alpha=1 - beta1)
    v = v.clone().mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = (v.sqrt() / (1 - beta2**t) ** 0.5).add_(eps)
    return theta.clone().addcdiv_(m, denom, value=-lr / (1 - beta1**t)), m, v
'''},
    # einsum + sech^2 backprop, perturb-and-restore finite differences; PCA by SVD; autoencoder by
    # autograd, with the two initial weight matrices drawn in the other order
    "ok_ex3_ex4_einsum_svd_autograd_drawswap": {
        "ex3_backprop": '''
def mlp_loss_and_grads(X, Y, W1, b1, W2, b2):
    N = len(X)
    Z = torch.einsum("nd,dh->nh", X, W1) + b1
    A = torch.tanh(Z)
    E = torch.einsum("nh,hc->nc", A, W2) + b2 - Y
    g = E / N
    dZ = (g @ W2.T) / torch.cosh(Z) ** 2
    return 0.5 * (E * E).sum() / N, X.T @ dZ, dZ.sum(0), A.T @ g, g.sum(0)

def numerical_gradient(f, x, h=1e-5):
    x = x.clone()
    xf = x.view(-1)
    out = torch.empty(x.numel(), dtype=x.dtype)
    for i in range(x.numel()):
        old = float(xf[i])
        xf[i] = old + h
        fp = float(f(x))
        xf[i] = old - h
        fm = float(f(x))
        xf[i] = old
        out[i] = (fp - fm) / (2 * h)
    return out.reshape(x.shape)
''',
        "ex4_linear_autoencoder": '''
def principal_subspace(X, k):
    Xc = X - X.mean(0, keepdim=True)
    _, S, Vh = torch.linalg.svd(Xc, full_matrices=False)
    lam = torch.zeros(X.shape[1], dtype=X.dtype)
    lam[: S.numel()] = S**2 / X.shape[0]
    return Vh[:k].T.contiguous(), lam

def train_linear_autoencoder(X, k, generator, steps=2000, lr=0.1):
    Xc = X - X.mean(0)
    dec = (0.1 * torch.randn(k, X.shape[1], generator=generator, dtype=X.dtype)).requires_grad_()
    enc = (0.1 * torch.randn(X.shape[1], k, generator=generator, dtype=X.dtype)).requires_grad_()
    for _ in range(steps):
        loss = ((Xc - Xc @ enc @ dec) ** 2).sum() / X.shape[0]
        g_enc, g_dec = torch.autograd.grad(loss, (enc, dec))
        with torch.no_grad():
            enc -= lr * g_enc
            dec -= lr * g_dec
    return enc.detach(), dec.detach()
'''},
    # explicit loops / einsum / hand softmax / numpy / log identities
    "ok_ex5_ex7_loops_einsum": {
        "ex5_conv_residual": '''
def conv2d(x, w, b, stride=1, padding=0):
    N, C, H, W = x.shape
    O, _, kH, kW = w.shape
    xp = torch.zeros(N, C, H + 2 * padding, W + 2 * padding, dtype=x.dtype)
    xp[:, :, padding:padding + H, padding:padding + W] = x
    Ho = (H + 2 * padding - kH) // stride + 1
    Wo = (W + 2 * padding - kW) // stride + 1
    out = torch.empty(N, O, Ho, Wo, dtype=x.dtype)
    for i in range(Ho):
        for j in range(Wo):
            patch = xp[:, :, i * stride:i * stride + kH, j * stride:j * stride + kW]
            out[:, :, i, j] = torch.einsum("ncpq,ocpq->no", patch, w) + b
    return out

def residual_block(x, W1, b1, W2, b2):
    h = (x @ W1 + b1).clamp(min=0)
    return torch.addmm(b2 + x, h, W2)
''',
        "ex6_attention": '''
def scaled_dot_product_attention(q, k, v, mask=None):
    s = torch.einsum("...ld,...sd->...ls", q, k) / np.sqrt(k.shape[-1])
    if mask is not None:
        s = torch.where(mask, s, torch.tensor(-1e30, dtype=s.dtype))
    p = torch.exp(s - s.max(-1, keepdim=True).values)
    return torch.einsum("...ls,...sd->...ld", p / p.sum(-1, keepdim=True), v)

def sinusoidal_positional_encoding(L, d):
    pe = np.zeros((L, d))
    for pos in range(L):
        for i in range(0, d, 2):
            f = np.exp(-np.log(10000.0) * i / d)
            pe[pos, i], pe[pos, i + 1] = np.sin(pos * f), np.cos(pos * f)
    return torch.from_numpy(pe)
''',
        "ex7_superresolution": '''
def pixel_shuffle(x, r):
    N, Cr2, H, W = x.shape
    out = torch.empty(N, Cr2 // r**2, H * r, W * r, dtype=x.dtype)
    for i in range(r):
        for j in range(r):
            out[:, :, i::r, j::r] = x[:, i * r + j::r * r]
    return out

def psnr(x, y, max_val=1.0):
    mse = ((x - y) ** 2).mean(dim=(1, 2, 3))
    return 20 * torch.log10(torch.as_tensor(max_val, dtype=x.dtype)) - 10 * torch.log10(mse)
'''},

    # Kramer: the covariance's smallest eigenvalue numerically; F.linear/addmm forward; Adam written by hand
    "ok_ex4_kramer_hand_adam": {"ex4_arc_solution": '''
def arc_pca_error(alpha):
    m = np.sin(alpha) / alpha  # E cos
    c2 = 0.5 + np.sin(2 * alpha) / (4 * alpha)  # E cos^2
    return float(np.linalg.eigvalsh(np.array([[c2 - m * m, 0.0], [0.0, 1.0 - c2]]))[0])
''', "ex4_kramer": '''
def autoassociative_forward(X, params):
    h = torch.tanh(torch.nn.functional.linear(X, params[0].T, params[1]))
    z = torch.addmm(params[3], h, params[2])
    return z, torch.addmm(params[7], torch.tanh(torch.addmm(params[5], z, params[4])), params[6])

def train_autoassociative(X, params, steps=150, lr=0.05):
    p = [q.detach().clone() for q in params]
    m = [torch.zeros_like(q) for q in p]
    v = [torch.zeros_like(q) for q in p]
    for t in range(1, steps + 1):
        leaves = [q.requires_grad_() for q in p]
        loss = torch.nn.functional.mse_loss(autoassociative_forward(X, leaves)[1], X, reduction="sum") / X.shape[0]
        grads = torch.autograd.grad(loss, leaves)
        with torch.no_grad():
            new = []
            for i, g in enumerate(grads):
                m[i] = 0.9 * m[i] + 0.1 * g
                v[i] = 0.999 * v[i] + 0.001 * g * g
                new.append(p[i].detach() - lr * (m[i] / (1 - 0.9**t)) / ((v[i] / (1 - 0.999**t)).sqrt() + 1e-8))
        p = new
    return p
'''},
    # deep nets with addmm/clamp and an nn.ParameterList under torch.optim.Adam (foreach off); the shift matrix
    # as a block_diag of 2 x 2 rotations; the expected PSNR with scipy's psi and math.log
    "ok_ex5_ex6_ex7_paramlist_blockdiag_psi": {"ex5_deep_nets": '''
def deep_net_forward(X, params, residual):
    W_in, b_in, *blocks, W_out, b_out = params
    h = torch.addmm(b_in, X, W_in)
    for W1, b1, W2, b2 in zip(blocks[0::4], blocks[1::4], blocks[2::4], blocks[3::4]):
        f = torch.addmm(b2, torch.clamp(torch.addmm(b1, h, W1), min=0), W2)
        h = h + f if residual else f
    return torch.addmm(b_out, h, W_out)

def train_deep_net(X, Y, params, residual, steps, lr):
    plist = torch.nn.ParameterList([torch.nn.Parameter(q.detach().clone()) for q in params])
    opt = torch.optim.Adam(plist.parameters(), lr=lr, foreach=False)
    out = torch.empty(steps + 1, dtype=torch.float64)
    for s in range(steps + 1):
        loss = torch.nn.functional.mse_loss(deep_net_forward(X, list(plist), residual), Y)
        out[s] = loss.detach()
        if s < steps:
            opt.zero_grad()
            loss.backward()
            opt.step()
    return out
''', "ex6_pe_shift_solution": '''
def pe_shift_matrix(k, d):
    blocks = []
    for i in range(d // 2):
        a = k / 10000 ** (2 * i / d)
        blocks.append(torch.tensor([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]], dtype=torch.float64))
    return torch.block_diag(*blocks)
''', "ex7_expected_psnr_solution": '''
def expected_psnr_gaussian(sigma, n_pixels, max_val=1.0):
    import math
    from scipy import special
    e_log10_ratio = (special.psi(n_pixels / 2) + math.log(2) - math.log(n_pixels)) / math.log(10)  # E log10(chi2_n / n)
    return 20 * math.log10(max_val / sigma) - 10 * e_log10_ratio
'''},
}
OK_GROUPS = {
    "ok_first_exercises": ["ok_ex1_reflected_units_loop", "ok_ex2_inplace_torch_ops", "ok_ex3_ex4_einsum_svd_autograd_drawswap",
                           "ok_ex5_ex7_loops_einsum"],
    "ok_new_exercises": ["ok_ex4_kramer_hand_adam", "ok_ex5_ex6_ex7_paramlist_blockdiag_psi"],
}


# --------------------------------------------------------------------------- plausible bugs
AUTOGRAD_BACKPROP = '''
def mlp_loss_and_grads(X, Y, W1, b1, W2, b2):
    # right values, but by torch.autograd: the exercise asks for back-propagation by hand
    params = [p.clone().requires_grad_() for p in (W1, b1, W2, b2)]
    loss = 0.5 * ((torch.tanh(X @ params[0] + params[1]) @ params[2] + params[3] - Y) ** 2).sum() / X.shape[0]
    loss.backward()
    return loss.detach(), *(p.grad for p in params)
'''

# name -> (solution grade_id, edits of the reference source (list of (old, new)) or replacement functions (str),
#          graded cells that must score 0, cells of the same solution cell that must keep full marks)
BUGS = {
    "bug_ex1_no_output_bias": ("ex1_relu_interpolant", [("c = float(values[0])", "c = 0.0")],
                               ["ex1_hat_function", "ex1_matches_interp_inside", "ex1_constant_outside"], []),
    # the constant of the bound off by a factor 2 (h^2 / 4)
    "bug_ex1_bound_constant_quarter": ("ex1_error_bound_solution", [("/ 8.0", "/ 4.0")], ["ex1_error_bound"], []),
    # the mean knot spacing instead of the largest one
    "bug_ex1_bound_mean_spacing": ("ex1_error_bound_solution", [("np.max(np.diff(knots))", "np.mean(np.diff(knots))")],
                                   ["ex1_error_bound"], []),
    "bug_ex2_adam_no_bias_correction": ("ex2_optimizers", [("m_hat = m_new / (1 - beta1**t)", "m_hat = m_new"),
                                                           ("v_hat = v_new / (1 - beta2**t)", "v_hat = v_new")],
                                        ["ex2_adam_matches_torch"], ["ex2_momentum_matches_torch"]),
    # the velocity updated in place: right trajectory, but the caller's state tensor is modified
    "bug_ex2_momentum_in_place": ("ex2_optimizers", [("v_new = gamma * v + lr * grad", "v_new = v.mul_(gamma).add_(lr * grad)")],
                                  ["ex2_momentum_matches_torch"], ["ex2_adam_matches_torch"]),
    "bug_ex3_tanh_prime_missing_square": ("ex3_backprop", [("* (1 - A**2)", "* (1 - A)")], ["ex3_hidden_layer_grads"],
                                          ["ex3_output_layer_grads"]),
    "bug_ex3_numgrad_off_by_one": ("ex3_backprop", [("for i in range(x.numel()):", "for i in range(x.numel() - 1):")],
                                   ["ex3_numerical_gradient_centred"], ["ex3_hidden_layer_grads"]),
    # forbid() reaches the student's process: a backprop done by autograd loses exactly the by-hand cells
    "bug_ex3_gradients_by_autograd": ("ex3_backprop", AUTOGRAD_BACKPROP, ["ex3_output_layer_grads", "ex3_hidden_layer_grads"],
                                      ["ex3_loss_value"]),
    "bug_ex4_unbiased_covariance": ("ex4_linear_autoencoder", [("Xc.T @ Xc / X.shape[0]", "Xc.T @ Xc / (X.shape[0] - 1)")],
                                    ["ex4_principal_subspace"], []),
    # E cos^2 instead of Var cos (the mean of the arc not subtracted)
    "bug_ex4_arc_uncentred": ("ex4_arc_solution", [(" - (np.sin(alpha) / alpha) ** 2", "")], ["ex4_arc_pca_error"], []),
    # the larger variance: the error of the worst axis-aligned line
    "bug_ex4_arc_max_variance": ("ex4_arc_solution", [("min(var_cos, var_sin)", "max(var_cos, var_sin)")],
                                 ["ex4_arc_pca_error"], []),
    # a linear mapping layer: the encoder is a linear projection onto the code
    "bug_ex4_linear_mapping_layer": ("ex4_kramer", [("torch.tanh(X @ W_map + b_map)", "(X @ W_map + b_map)")],
                                     ["ex4_autoassociative_forward", "ex4_nonlinear_beats_pca"], []),
    # only the decoder half trained
    "bug_ex4_decoder_only_trained": ("ex4_kramer", [("opt = torch.optim.Adam(p, lr=lr)", "opt = torch.optim.Adam(p[4:], lr=lr)")],
                                     ["ex4_nonlinear_beats_pca"], ["ex4_autoassociative_forward"]),
    "bug_ex5_residual_returns_input": ("ex5_conv_residual",
                                       [("return x + torch.relu(x @ W1 + b1) @ W2 + b2", "return x")],
                                       ["ex5_residual_block"], ["ex5_conv2d_matches_torch"]),
    # the skip connection kept in the plain network
    "bug_ex5_plain_keeps_skip": ("ex5_deep_nets", [("if residual else torch.relu(h @ W1 + b1) @ W2 + b2",
                                                    "if True else torch.relu(h @ W1 + b1) @ W2 + b2")],
                                 ["ex5_deep_net_forward"], []),
    # plain gradient descent instead of Adam
    "bug_ex5_sgd_not_adam": ("ex5_deep_nets", [("opt = torch.optim.Adam(p, lr=lr)", "opt = torch.optim.SGD(p, lr=lr)")],
                             ["ex5_train_deep_net", "ex5_degradation"], ["ex5_deep_net_forward"]),
    # the loss after the last step missing: (steps,) values
    "bug_ex5_no_final_loss": ("ex5_deep_nets", [("    return torch.tensor(losses, dtype=torch.float64)",
                                                 "    return torch.tensor(losses[:-1], dtype=torch.float64)")],
                              ["ex5_train_deep_net"], ["ex5_deep_net_forward"]),
    "bug_ex6_no_sqrt_dk_scaling": ("ex6_attention", [("/ q.shape[-1] ** 0.5", "")],
                                   ["ex6_attention_matches_torch", "ex6_attention_mask"], ["ex6_positional_encoding"]),
    # the rotation's sign: T_{-k} instead of T_k
    "bug_ex6_pe_shift_wrong_sign": ("ex6_pe_shift_solution",
                                    [("T[0::2, 1::2] = torch.diag(s)", "T[0::2, 1::2] = torch.diag(-s)"),
                                     ("T[1::2, 0::2] = torch.diag(-s)", "T[1::2, 0::2] = torch.diag(s)")],
                                    ["ex6_pe_shift"], []),
    # frequency index i instead of 2i
    "bug_ex6_pe_shift_frequencies": ("ex6_pe_shift_solution", [("torch.arange(0, d, 2, dtype=torch.float64) / d",
                                                                "torch.arange(0, d // 2, dtype=torch.float64) / d")],
                                     ["ex6_pe_shift"], []),
    "bug_ex7_shuffle_ij_transposed": ("ex7_superresolution", [("permute(0, 1, 4, 2, 5, 3)", "permute(0, 1, 4, 3, 5, 2)")],
                                      ["ex7_pixel_shuffle_matches_torch"], ["ex7_psnr"]),
    # the squared errors summed over the image instead of averaged
    "bug_ex7_psnr_sum_not_mean": ("ex7_superresolution", [(".flatten(1).mean(1)", ".flatten(1).sum(1)")], ["ex7_psnr"],
                                  ["ex7_pixel_shuffle_matches_torch"]),
    # the PSNR at the expected MSE (Jensen's gap ignored)
    "bug_ex7_expected_psnr_at_mean_mse": ("ex7_expected_psnr_solution",
                                          [("- 10 / np.log(10) * e_log_mse", "- 10 * np.log10(sigma**2)")],
                                          ["ex7_expected_psnr"], []),
    # digamma(n) instead of digamma(n / 2)
    "bug_ex7_expected_psnr_digamma_n": ("ex7_expected_psnr_solution", [("digamma(n_pixels / 2)", "digamma(n_pixels)")],
                                        ["ex7_expected_psnr"], []),
}
# bugs graded together: at most one per solution cell
BUG_GROUPS = {
    "bugs_a": ["bug_ex1_no_output_bias", "bug_ex1_bound_constant_quarter", "bug_ex2_adam_no_bias_correction",
               "bug_ex3_tanh_prime_missing_square", "bug_ex4_unbiased_covariance", "bug_ex4_arc_uncentred",
               "bug_ex4_linear_mapping_layer", "bug_ex5_plain_keeps_skip", "bug_ex6_no_sqrt_dk_scaling",
               "bug_ex6_pe_shift_wrong_sign", "bug_ex7_shuffle_ij_transposed", "bug_ex7_expected_psnr_at_mean_mse",
               "bug_ex5_residual_returns_input"],
    "bugs_b": ["bug_ex1_bound_mean_spacing", "bug_ex2_momentum_in_place", "bug_ex3_numgrad_off_by_one",
               "bug_ex4_arc_max_variance", "bug_ex4_decoder_only_trained", "bug_ex5_sgd_not_adam",
               "bug_ex6_pe_shift_frequencies", "bug_ex7_psnr_sum_not_mean", "bug_ex7_expected_psnr_digamma_n"],
    "bugs_c": ["bug_ex3_gradients_by_autograd", "bug_ex5_no_final_loss"],
}


def _untouched_cells(replaced):
    """Graded cells whose solution cell (and the solution cells it depends on) were not replaced."""
    return [c for gid, cells in EXERCISE_CELLS.items()
            if gid not in replaced and not (DEPENDS.get(gid, set()) & set(replaced)) for c in cells]


def _lost(g, cells):
    return {c: (g.scores[c], g.max_scores[c], g.messages.get(c, "")[:300]) for c in cells if g.scores[c] != g.max_scores[c]}


def test_groups_cover_every_variant_once():
    assert sorted(n for names in OK_GROUPS.values() for n in names) == sorted(OK)
    assert sorted(n for names in BUG_GROUPS.values() for n in names) == sorted(BUGS)
    for names in BUG_GROUPS.values():
        gids = [BUGS[n][0] for n in names]
        assert len(gids) == len(set(gids)), f"two bugs in one solution cell: {gids}"
    assert len(OK) >= 5 and len(BUGS) >= 10


@pytest.mark.parametrize("group", list(OK_GROUPS))
def test_correct_alternatives_get_full_marks(group, grade_variant, solution_source):
    replace = {}
    for name in OK_GROUPS[group]:
        for gid, new in OK[name].items():
            assert gid not in replace, f"{gid} replaced twice in {group}"
            replace[gid] = swap_functions(solution_source(PS, gid), new)
    g = grade_variant(PS, replace)
    assert {c for cs in EXERCISE_CELLS.values() for c in cs} == set(g.scores), "EXERCISE_CELLS out of date"
    cells = [c for gid in replace for c in EXERCISE_CELLS[gid]]
    lost = _lost(g, cells)
    assert not lost, f"{group}: a correct implementation lost points: {lost}"
    assert g.total == 100, f"{group}: total {g.total}"


@pytest.mark.parametrize("group", list(BUG_GROUPS))
def test_plausible_bugs_lose_their_cells(group, grade_variant, solution_source):
    replace, must_fail, keep = {}, {}, []
    for name in BUG_GROUPS[group]:
        gid, change, fail, kept = BUGS[name]
        src = solution_source(PS, gid)
        replace[gid] = swap_functions(src, change) if isinstance(change, str) else edit(src, *change)
        must_fail[name] = fail
        keep += kept
    g = grade_variant(PS, replace)
    missing = {c for cs in must_fail.values() for c in cs} - set(g.scores)
    assert not missing, f"unknown graded cells {missing}"
    not_caught = {name: {c: g.scores[c] for c in cells if g.scores[c] != 0} for name, cells in must_fail.items()}
    not_caught = {k: v for k, v in not_caught.items() if v}
    assert not not_caught, f"{group}: bugs not caught: {not_caught}"
    lost = _lost(g, keep + _untouched_cells(replace))
    assert not lost, f"{group}: cells that no bug of the group concerns lost points: {lost}"
