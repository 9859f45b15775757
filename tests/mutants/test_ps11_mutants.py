"""ps11 (generative models) mutation check: correct alternatives get full marks, plausible bugs lose exactly the
cells meant to catch them.

Grading the whole notebook takes several seconds, so variants share gradings: one grading carries at most one
variant per exercise. That is sound because every graded cell of exercise k calls only exercise k's functions
(the figure cells use several, but are ungraded). Each variant has its own test and asserts only on its own
exercise's cells: a bug must zero the cells listed for it and leave the other cells of its exercise at full marks.
The control test checks that exercises left untouched in a bug grading keep full marks.
"""

from __future__ import annotations

import pytest
from variants import edit, swap_functions

pytestmark = pytest.mark.slow

PS = "ps11"

CELLS = {
    "ex1_vae": ["ex1_kl_vs_torch", "ex1_elbo_monte_carlo", "ex1_elbo_gradient", "ex1_linear_vae_ppca"],
    "ex2_gan": ["ex2_optimal_discriminator", "ex2_value_jsd", "ex2_discriminator_approaches_optimum"],
    "ex3_disjoint": ["ex3_parallel_lines", "ex3_generator_gradient", "ex3_gradient_vanishes"],
    "ex4_wgan": ["ex4_dual_value", "ex4_dual_certificate", "ex4_clipped_critic_tracks_w1"],
    "ex5_mmd": ["ex5_mmd_imq_values", "ex5_mmd_unbiased", "ex5_rbf_closed_form", "ex5_std_exponents"],
    "ex6_sdot": ["ex6_energy_gradient", "ex6_cell_masses", "ex6_matches_pot"],
}

# ------------------------------------------------------------------ correct alternatives (one per exercise)
ALT_EX1 = '''
def gaussian_kl(mu, logvar):
    # the library route: torch.distributions, summed over the latent coordinates (keeps float32)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    return torch.distributions.kl_divergence(q, p).sum(-1)


def linear_vae_elbo(X, W, b, log_sigma2, V, logvar):
    # log-likelihood at the encoder mean by torch.distributions, plus the variance correction (an einsum)
    mu = (X - b) @ V.T
    s2 = torch.exp(log_sigma2)
    at_mean = torch.distributions.Normal(mu @ W.T + b, torch.sqrt(s2)).log_prob(X).sum(-1)
    correction = torch.einsum("j,ij,ij->", torch.exp(logvar), W, W) / (2 * s2)
    kl = 0.5 * (mu.pow(2).sum(-1) + torch.exp(logvar).sum() - logvar.sum() - logvar.numel())
    return at_mean - correction - kl


def fit_linear_vae(X, k, generator):
    # no optimiser at all: the pPCA maximum likelihood (Tipping & Bishop) and its exact posterior,
    # which is diagonal because the columns of W are orthogonal
    b = X.mean(0)
    lam, U = torch.linalg.eigh(torch.cov(X.T, correction=0))
    lam, U = lam.flip(0), U.flip(1)
    s2 = lam[k:].mean()
    W = U[:, :k] * torch.sqrt(lam[:k] - s2)
    M = W.T @ W + s2 * torch.eye(k, dtype=X.dtype)
    V = torch.linalg.solve(M, W.T)
    logvar = torch.log(s2 / torch.diagonal(M))
    return W, b, torch.log(s2), V, logvar
'''

ALT_EX2 = '''
def optimal_discriminator(p, q):
    # odds form; p = 0 gives 1/(1 + inf) = 0 and q = 0 gives 1
    with torch.no_grad():
        return 1.0 / (1.0 + q / p)


def gan_value(D, p, q):
    # explicit masks instead of xlogy
    a = torch.where(p > 0, p * torch.log(torch.where(p > 0, D, torch.ones_like(D))), torch.zeros_like(p))
    c = torch.where(q > 0, q * torch.log(torch.where(q > 0, 1 - D, torch.ones_like(D))), torch.zeros_like(q))
    return a.sum() + c.sum()


def train_discriminator(x_real, x_fake, generator):
    # torch.nn modules (two tanh layers), BCEWithLogitsLoss with labels, weights re-drawn from the generator
    net = torch.nn.Sequential(torch.nn.Linear(1, 24), torch.nn.Tanh(), torch.nn.Linear(24, 24), torch.nn.Tanh(),
                              torch.nn.Linear(24, 1)).to(torch.float64)
    with torch.no_grad():
        for prm in net.parameters():
            prm.copy_(torch.randn(prm.shape, generator=generator, dtype=torch.float64) * 0.7)
    x = torch.cat([x_real, x_fake])[:, None]
    y = torch.cat([torch.ones_like(x_real), torch.zeros_like(x_fake)])[:, None]
    w = torch.cat([torch.full_like(x_real, 0.5 / len(x_real)), torch.full_like(x_fake, 0.5 / len(x_fake))])[:, None]
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(400):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x), y, weight=w, reduction="sum")
        loss.backward()
        opt.step()
    return lambda t: torch.sigmoid(net(torch.as_tensor(t, dtype=torch.float64)[:, None]))[:, 0].detach()
'''

ALT_EX3 = '''
def parallel_lines_divergences(theta):
    # numpy, float("inf")
    if abs(theta) > 0:
        return torch.from_numpy(np.array([np.abs(theta), np.log(2.0), float("inf"), 1.0]))
    return torch.from_numpy(np.zeros(4))


def vanishing_gradient(a, c, theta):
    # torch.autograd for the generator gradient and for the gradients of D on both lines
    th = torch.tensor(float(theta), dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(torch.log1p(-torch.sigmoid(a * th + c)), th)
    x1 = torch.tensor([0.0, float(theta)], dtype=torch.float64, requires_grad=True)
    Dx = torch.sigmoid(a * x1 + c)
    (dD,) = torch.autograd.grad(Dx.sum(), x1)
    Dx = Dx.detach()
    eps = torch.maximum(1 - Dx[0], Dx[1]) + dD.abs().max()
    return grad.detach(), eps
'''

ALT_EX4 = '''
def w1_dual_lp(x, a, y, b):
    # cvxpy, one vectorised constraint on the matrix of differences
    import cvxpy as cp
    Z = torch.cat([x, y]).numpy()
    n = x.shape[0]
    Dm = np.sqrt(((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1))
    f = cp.Variable(len(Z))
    one = np.ones((len(Z), 1))
    diff = cp.reshape(f, (len(Z), 1), order="F") @ one.T - one @ cp.reshape(f, (1, len(Z)), order="F")
    prob = cp.Problem(cp.Maximize(a.numpy() @ f[:n] - b.numpy() @ f[n:]), [diff <= Dm])
    prob.solve()
    fv = torch.tensor(f.value, dtype=torch.float64)
    return torch.tensor(prob.value, dtype=torch.float64), fv[:n], fv[n:]


def clipped_critic_w1(x_real, x_fake, clip, steps, lr, generator):
    # torch.nn.Sequential and torch.optim.RMSprop, clipping through parameters()
    f = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16), torch.nn.ReLU(),
                            torch.nn.Linear(16, 1)).to(torch.float64)
    with torch.no_grad():
        for prm in f.parameters():
            prm.copy_((2 * torch.rand(prm.shape, generator=generator, dtype=torch.float64) - 1) * clip)
    opt = torch.optim.RMSprop(f.parameters(), lr=lr)
    xr, xf = x_real[:, None], x_fake[:, None]
    for _ in range(steps):
        opt.zero_grad()
        (f(xf).mean() - f(xr).mean()).backward()
        opt.step()
        with torch.no_grad():
            for prm in f.parameters():
                prm.clamp_(-clip, clip)
    with torch.no_grad():
        return (f(xr).mean() - f(xf).mean()).item()
'''

ALT_EX5 = '''
def mmd_imq(x, y, scales):
    # numpy, scales in an outer loop, diagonal removed with fill_diagonal
    xn, yn = x.numpy(), y.numpy()
    n, m = len(xn), len(yn)
    tot = 0.0
    for C in scales:
        Kxx = C / (C + ((xn[:, None] - xn[None]) ** 2).sum(-1))
        Kyy = C / (C + ((yn[:, None] - yn[None]) ** 2).sum(-1))
        Kxy = C / (C + ((xn[:, None] - yn[None]) ** 2).sum(-1))
        np.fill_diagonal(Kxx, 0.0)
        np.fill_diagonal(Kyy, 0.0)
        tot += Kxx.sum() / (n * (n - 1)) + Kyy.sum() / (m * (m - 1)) - 2 * Kxy.mean()
    return torch.tensor(tot, dtype=torch.float64)


def mmd2_rbf_gaussians(mu1, var1, mu2, var2, bandwidth):
    # in log space
    d = mu1.numel()
    g = bandwidth * bandwidth
    def logek(s, dist2):
        return 0.5 * d * (math.log(g) - math.log(g + s)) - dist2 / (2 * (g + s))
    dist2 = float(((mu1 - mu2) ** 2).sum())
    v = math.exp(logek(2 * var1, 0.0)) + math.exp(logek(2 * var2, 0.0)) - 2 * math.exp(logek(var1 + var2, dist2))
    return torch.tensor(v, dtype=torch.float64)


def mmd_std_exponents(shift, scales, generator):
    # another design: calls mmd_imq in a loop, sizes 8..128, 120 repetitions, scipy's linregress
    from scipy.stats import linregress
    ns = [8, 16, 32, 64, 128]
    res = []
    for delta in (0.0, shift):
        sd = []
        for n in ns:
            v = []
            for _ in range(120):
                x = torch.randn(n, 2, generator=generator, dtype=torch.float64)
                y = torch.randn(n, 2, generator=generator, dtype=torch.float64) + torch.tensor([delta, 0.0], dtype=torch.float64)
                v.append(float(mmd_imq(x, y, scales)))
            sd.append(np.std(v, ddof=1))
        res.append(linregress(np.log(ns), np.log(sd)).slope)
    return res[0], res[1]
'''

ALT_EX6 = '''
def sdot_energy_grad(h, Y, x, nu):
    # one-hot of the argmax instead of bincount
    S = x @ Y.T + h
    idx = S.argmax(dim=1)
    w = torch.nn.functional.one_hot(idx, Y.shape[0]).to(h.dtype).mean(0)
    return S.gather(1, idx[:, None]).mean() - (nu * h).sum(), w - nu


def solve_sdot(Y, nu, n_samples, steps, lr, generator):
    # Adam written out by hand, constant step size, last iterate
    h = torch.zeros(Y.shape[0], dtype=Y.dtype)
    m1 = torch.zeros_like(h)
    m2 = torch.zeros_like(h)
    for t in range(1, steps + 1):
        x = torch.rand(n_samples, Y.shape[1], generator=generator, dtype=Y.dtype) * 2 - 1
        _, g = sdot_energy_grad(h, Y, x, nu)
        m1 = 0.9 * m1 + 0.1 * g
        m2 = 0.999 * m2 + 0.001 * g * g
        h = h - lr * 0.3 * (m1 / (1 - 0.9**t)) / (torch.sqrt(m2 / (1 - 0.999**t)) + 1e-8)
    return h
'''

ALTERNATIVES = {
    "ex1_torch_distributions_and_closed_form_ppca": ("ex1_vae", ALT_EX1),
    "ex2_odds_masks_nn_sequential": ("ex2_gan", ALT_EX2),
    "ex3_numpy_and_autograd": ("ex3_disjoint", ALT_EX3),
    "ex4_cvxpy_and_nn_rmsprop": ("ex4_wgan", ALT_EX4),
    "ex5_numpy_logspace_other_design": ("ex5_mmd", ALT_EX5),
    "ex6_one_hot_hand_written_adam": ("ex6_sdot", ALT_EX6),
}

# ------------------------------------------------------------------ plausible bugs
# name -> (grading group, solution cell, [(old, new), ...], cells that must score 0; the exercise's other cells keep
# full marks)
BUGS = {
    # KL without the -1 (an additive constant: the ELBO's gradient is unchanged, its value is not)
    "ex1_kl_missing_minus_one": ("A", "ex1_vae", [
        ("torch.exp(logvar) - logvar - 1.0)", "torch.exp(logvar) - logvar)")],
        ["ex1_kl_vs_torch", "ex1_elbo_monte_carlo", "ex1_linear_vae_ppca"]),
    # E_q ||x - b - W z||^2 evaluated at z = mu only: the encoder variance term is forgotten
    "ex1_elbo_missing_trace_term": ("B", "ex1_vae", [
        ("sq = (resid * resid).sum(dim=1) + (s * (W * W).sum(dim=0)).sum()", "sq = (resid * resid).sum(dim=1)")],
        ["ex1_elbo_monte_carlo", "ex1_elbo_gradient", "ex1_linear_vae_ppca"]),
    # D* = q / (p + q): data and generator swapped
    "ex2_discriminator_swapped": ("A", "ex2_gan", [("return p / (p + q)", "return q / (p + q)")],
                                  ["ex2_optimal_discriminator", "ex2_value_jsd"]),
    # p log D without the 0 log 0 = 0 convention: NaN for disjoint supports
    "ex2_value_no_xlogy": ("B", "ex2_gan", [
        ("return torch.xlogy(p, D).sum() + torch.xlogy(q, 1.0 - D).sum()",
         "return (p * torch.log(D)).sum() + (q * torch.log(1.0 - D)).sum()")],
        ["ex2_value_jsd"]),
    # real and fake labels swapped in the discriminator's loss
    "ex2_train_labels_swapped": ("C", "ex2_gan", [
        ("softplus(-logit(x_real)).mean()", "softplus(logit(x_real)).mean()"),
        ("softplus(logit(x_fake)).mean())", "softplus(-logit(x_fake)).mean())")],
        ["ex2_discriminator_approaches_optimum"]),
    # JS in bits (log base 2) instead of nats
    "ex3_js_in_bits": ("A", "ex3_disjoint", [("math.log(2.0), math.inf", "1.0, math.inf")], ["ex3_parallel_lines"]),
    # ||D - D*|| without the gradient part of the norm
    "ex3_eps_without_gradient_norm": ("B", "ex3_disjoint", [
        ("    return grad, sup_val + sup_grad", "    return grad, sup_val")],
        ["ex3_generator_gradient", "ex3_gradient_vanishes"]),
    # sign error in the generator gradient
    "ex3_gradient_sign": ("C", "ex3_disjoint", [("grad = -a * s_fake", "grad = a * s_fake")], ["ex3_generator_gradient"]),
    # squared Euclidean ground cost (W2^2 instead of W1)
    "ex4_squared_distances": ("A", "ex4_wgan", [
        ("Dm = np.sqrt(((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1))", "Dm = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1)")],
        ["ex4_dual_value", "ex4_dual_certificate"]),
    # the critic is never trained
    "ex4_critic_not_trained": ("B", "ex4_wgan", [("    for _ in range(steps):\n        opt.zero_grad()\n        (-(",
                                                  "    for _ in range(0):\n        opt.zero_grad()\n        (-(")],
                               ["ex4_clipped_critic_tracks_w1"]),
    # the biased V-statistic (keeps the i = j terms)
    "ex5_biased_v_statistic": ("A", "ex5_mmd", [
        ("sxx = (Kxx.sum() - torch.diagonal(Kxx).sum()) / (n * (n - 1))", "sxx = Kxx.mean()"),
        ("syy = (Kyy.sum() - torch.diagonal(Kyy).sum()) / (m * (m - 1))", "syy = Kyy.mean()")],
        ["ex5_mmd_imq_values", "ex5_mmd_unbiased"]),
    # (g / (g + s))^d instead of ^(d/2) in the Gaussian integral
    "ex5_rbf_power_d": ("B", "ex5_mmd", [("return (g / (g + s)) ** (d / 2)", "return (g / (g + s)) ** d")],
                        ["ex5_rbf_closed_form"]),
    # the experiment fits the variance instead of the standard deviation
    "ex5_fits_variance": ("C", "ex5_mmd", [("stds.append(float(vals.std()))", "stds.append(float(vals.var()))")],
                          ["ex5_std_exponents"]),
    # gradient sign: nu - w(h)
    "ex6_gradient_sign": ("A", "ex6_sdot", [("return best.mean() - nu @ h, w - nu", "return best.mean() - nu @ h, nu - w")],
                          ["ex6_energy_gradient", "ex6_cell_masses", "ex6_matches_pot"]),
    # the source law sampled as N(0, I) instead of uniform on [-1, 1]^D
    "ex6_gaussian_source": ("B", "ex6_sdot", [
        ("x = 2 * torch.rand(n_samples, D, generator=generator, dtype=Y.dtype) - 1",
         "x = torch.randn(n_samples, D, generator=generator, dtype=Y.dtype)")],
        ["ex6_cell_masses", "ex6_matches_pot"]),
    # cell counts instead of cell masses (not divided by the number of samples)
    "ex6_counts_not_masses": ("C", "ex6_sdot", [
        ("w = torch.bincount(idx, minlength=Y.shape[0]).to(h.dtype) / x.shape[0]",
         "w = torch.bincount(idx, minlength=Y.shape[0]).to(h.dtype)")],
        ["ex6_energy_gradient", "ex6_cell_masses", "ex6_matches_pot"]),
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
            replace = {ex: swap_functions(solution_source(PS, ex), code) for ex, code in ALTERNATIVES.values()}
        else:
            replace = {ex: edit(solution_source(PS, ex), *edits) for grp, ex, edits, _ in BUGS.values() if grp == group}
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
def test_plausible_bug_loses_exactly_its_cells(variant, grade_variant, solution_source):
    group, ex, _, must_fail = BUGS[variant]
    g = _grading(group, grade_variant, solution_source)
    assert set(must_fail) <= set(CELLS[ex])
    passed = [c for c in must_fail if g.scores[c] != 0]
    assert not passed, f"{variant} not caught by {passed}"
    lost = {c: g.messages.get(c) for c in CELLS[ex] if c not in must_fail and g.scores[c] != g.max_scores[c]}
    assert not lost, f"{variant} also lost {lost}"
    assert g.total < g.max_total == 100


# gradings A and B carry a bug in every exercise; C leaves exercises 1 and 4 untouched
@pytest.mark.parametrize("group", sorted(g for g, exs in _GROUP_EXERCISES.items() if set(CELLS) - set(exs)))
def test_bug_gradings_leave_other_exercises_intact(group, grade_variant, solution_source):
    g = _grading(group, grade_variant, solution_source)
    untouched = [c for ex, cells in CELLS.items() if ex not in _GROUP_EXERCISES[group] for c in cells]
    lost = {c: g.messages.get(c) for c in untouched if g.scores[c] != g.max_scores[c]}
    assert not lost, f"grading {group}: reference exercises lost points {lost}"
