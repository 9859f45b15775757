"""ps01 mutation check: correct alternative implementations get full marks on their exercises'
graded cells, plausible bugs lose the points of the cell meant to catch them.

Every variant grades the whole notebook (~6 s each), so the list is kept short; the wider
ad-hoc sweep (~60 mutants) that this file condenses found every bug below caught."""

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
    "ex5_conv_residual": ["ex5_conv2d_matches_torch", "ex5_conv2d_stride_padding", "ex5_residual_block"],
    "ex6_attention": ["ex6_attention_matches_torch", "ex6_attention_mask", "ex6_positional_encoding"],
    "ex7_superresolution": ["ex7_pixel_shuffle_matches_torch", "ex7_psnr"],
}


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
}

# --------------------------------------------------------------------------- plausible bugs
# name -> (solution grade_id, [(old, new), ...] edits of the reference source, graded cells that must score 0)
BUGS = {
    "bug_ex1_no_output_bias": ("ex1_relu_interpolant", [("c = float(values[0])", "c = 0.0")],
                               ["ex1_hat_function", "ex1_matches_interp_inside", "ex1_constant_outside"]),
    "bug_ex2_adam_no_bias_correction": ("ex2_optimizers", [("m_hat = m_new / (1 - beta1**t)", "m_hat = m_new"),
                                                           ("v_hat = v_new / (1 - beta2**t)", "v_hat = v_new")],
                                        ["ex2_adam_matches_torch"]),
    "bug_ex3_tanh_prime_missing_square": ("ex3_backprop", [("* (1 - A**2)", "* (1 - A)")],
                                          ["ex3_hidden_layer_grads"]),
    "bug_ex4_unbiased_covariance": ("ex4_linear_autoencoder", [("Xc.T @ Xc / X.shape[0]", "Xc.T @ Xc / (X.shape[0] - 1)")],
                                    ["ex4_principal_subspace"]),
    "bug_ex5_residual_returns_input": ("ex5_conv_residual",
                                       [("return x + torch.relu(x @ W1 + b1) @ W2 + b2", "return x")],
                                       ["ex5_residual_block"]),
    "bug_ex6_no_sqrt_dk_scaling": ("ex6_attention", [("/ q.shape[-1] ** 0.5", "")],
                                   ["ex6_attention_matches_torch", "ex6_attention_mask"]),
    "bug_ex7_shuffle_ij_transposed": ("ex7_superresolution", [("permute(0, 1, 4, 2, 5, 3)", "permute(0, 1, 4, 3, 5, 2)")],
                                      ["ex7_pixel_shuffle_matches_torch"]),
    # the constant of the bound off by a factor 2 (h^2 / 4)
    "bug_ex1_bound_constant_quarter": ("ex1_error_bound_solution", [("/ 8.0", "/ 4.0")], ["ex1_error_bound"]),
    # the mean knot spacing instead of the largest one
    "bug_ex1_bound_mean_spacing": ("ex1_error_bound_solution", [("np.max(np.diff(knots))", "np.mean(np.diff(knots))")],
                                   ["ex1_error_bound"]),
    "bug_ex3_numgrad_off_by_one": ("ex3_backprop", [("for i in range(x.numel()):", "for i in range(x.numel() - 1):")],
                                   ["ex3_numerical_gradient_centred"]),
}


@pytest.mark.parametrize("name", list(OK))
def test_correct_alternative_gets_full_marks(name, grade_variant, solution_source):
    replace = {gid: swap_functions(solution_source(PS, gid), new) for gid, new in OK[name].items()}
    g = grade_variant(PS, replace)
    cells = [c for gid in replace for c in EXERCISE_CELLS[gid]]
    assert set(cells) <= set(g.scores), f"unknown graded cells {set(cells) - set(g.scores)}"
    lost = {c: (g.scores[c], g.max_scores[c], g.messages.get(c, "")[:300]) for c in cells
            if g.scores[c] != g.max_scores[c]}
    assert not lost, f"{name}: a correct implementation lost points: {lost}"


@pytest.mark.parametrize("name", list(BUGS))
def test_plausible_bug_loses_points(name, grade_variant, solution_source):
    gid, edits, must_fail = BUGS[name]
    g = grade_variant(PS, {gid: edit(solution_source(PS, gid), *edits)})
    assert set(must_fail) <= set(g.scores), f"unknown graded cells {set(must_fail) - set(g.scores)}"
    kept = {c: g.scores[c] for c in must_fail if g.scores[c] != 0}
    assert not kept, f"{name}: not caught by {kept}"
    assert g.total < 100, f"{name}: total {g.total}"


AUTOGRAD_BACKPROP = '''
def mlp_loss_and_grads(X, Y, W1, b1, W2, b2):
    # right values, but by torch.autograd: the exercise asks for back-propagation by hand
    params = [p.clone().requires_grad_() for p in (W1, b1, W2, b2)]
    loss = 0.5 * ((torch.tanh(X @ params[0] + params[1]) @ params[2] + params[3] - Y) ** 2).sum() / X.shape[0]
    loss.backward()
    return loss.detach(), *(p.grad for p in params)
'''


def test_gradients_by_autograd_lose_the_by_hand_cells(grade_variant, solution_source):
    """forbid() reaches the student's process: a backprop done by autograd loses the gradient cells."""
    g = grade_variant(PS, {"ex3_backprop": swap_functions(solution_source(PS, "ex3_backprop"), AUTOGRAD_BACKPROP)})
    assert g.scores["ex3_output_layer_grads"] == 0 and g.scores["ex3_hidden_layer_grads"] == 0, g.messages
    assert g.scores["ex3_loss_value"] == g.max_scores["ex3_loss_value"]

