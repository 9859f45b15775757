"""ps11 -- Generative Models: VAE, GAN, Wasserstein objectives and optimal transport.

Reference implementations of the notebook's exercises. Conventions (shared with the notebook):

* Tensors are ``torch`` tensors, float64 unless stated; N, M are sample counts, d the data
  dimension, k the latent dimension, m the number of target points.
* Randomness comes in as an argument (a ``torch.Generator`` or a noise tensor).
* Logarithms are natural (divergences in nats).

The module docstrings name the formula each function implements (the notebook's docstrings do not:
the student derives it).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import linprog

__all__ = [
    "gaussian_kl",
    "linear_vae_elbo",
    "fit_linear_vae",
    "optimal_discriminator",
    "gan_value",
    "train_discriminator",
    "parallel_lines_divergences",
    "vanishing_gradient",
    "w1_dual_lp",
    "clipped_critic_w1",
    "mmd_imq",
    "mmd2_rbf_gaussians",
    "mmd_std_exponents",
    "sdot_energy_grad",
    "solve_sdot",
]


# ---------------------------------------------------------------- exercise 1: VAE
def gaussian_kl(mu, logvar):
    """KL( N(mu, diag(exp(logvar))) || N(0, I) ) per row (Kingma & Welling 2013, Appendix B):
    1/2 sum_j (mu_j^2 + exp(logvar_j) - logvar_j - 1).

    mu: (N, k) float32 or float64; logvar: (N, k) same dtype
    returns: (N,) same dtype
    """
    return 0.5 * (mu * mu + torch.exp(logvar) - logvar - 1.0).sum(dim=-1)


def linear_vae_elbo(X, W, b, log_sigma2, V, logvar):
    """Closed-form ELBO of a linear Gaussian VAE (Lucas et al. 2019): decoder
    p(x|z) = N(W z + b, sigma^2 I), prior N(0, I_k), encoder q(z|x) = N(V (x - b), diag(exp(logvar))).
    E_q log p(x|z) = -d/2 log(2 pi sigma^2) - (||x - b - W mu||^2 + sum_j s_j ||W_:j||^2) / (2 sigma^2),
    ELBO = E_q log p(x|z) - KL(q || prior).

    X: (N, d); W: (d, k); b: (d,); log_sigma2: () ; V: (k, d); logvar: (k,) -- all float64
    returns: (N,) float64, the ELBO of each sample
    """
    d = X.shape[1]
    Xc = X - b
    mu = Xc @ V.T
    s = torch.exp(logvar)
    resid = Xc - mu @ W.T
    sq = (resid * resid).sum(dim=1) + (s * (W * W).sum(dim=0)).sum()
    rec = -0.5 * d * (math.log(2 * math.pi) + log_sigma2) - 0.5 * sq * torch.exp(-log_sigma2)
    return rec - gaussian_kl(mu, logvar.expand_as(mu))


def fit_linear_vae(X, k, generator):
    """Maximise the mean closed-form ELBO of ``linear_vae_elbo`` over (W, b, log_sigma2, V, logvar)
    with L-BFGS (strong Wolfe line search), from a small random initialisation drawn from ``generator``.

    X: (N, d) float64; k: int latent dimension; generator: torch.Generator
    returns: tuple (W (d, k), b (d,), log_sigma2 (), V (k, d), logvar (k,)), float64, detached
    """
    d = X.shape[1]
    W = (0.1 * torch.randn(d, k, generator=generator, dtype=X.dtype)).requires_grad_(True)
    V = (0.1 * torch.randn(k, d, generator=generator, dtype=X.dtype)).requires_grad_(True)
    b = X.mean(dim=0).clone().requires_grad_(True)
    log_sigma2 = torch.log(X.var(dim=0).mean()).clone().requires_grad_(True)
    logvar = torch.zeros(k, dtype=X.dtype, requires_grad=True)
    params = [W, b, log_sigma2, V, logvar]
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=300, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-10, tolerance_change=1e-14)

    def closure():
        opt.zero_grad()
        loss = -linear_vae_elbo(X, *params).mean()
        loss.backward()
        return loss

    opt.step(closure)
    return tuple(p.detach().clone() for p in params)


# ---------------------------------------------------------------- exercise 2: GAN and JSD
def optimal_discriminator(p, q):
    """Goodfellow et al. (2014), Proposition 1: D*(x) = p(x) / (p(x) + q(x)).

    p, q: (K,) float64 densities (or probabilities) of data and generator at K points, p + q > 0
    returns: (K,) float64
    """
    return p / (p + q)


def gan_value(D, p, q):
    """GAN value V(D, G) = E_p log D + E_q log(1 - D) of discrete distributions p (data) and
    q (generator) on K points, with 0 log 0 = 0 (Goodfellow et al. 2014, eq. 1).

    D: (K,) float64 in [0, 1]; p, q: (K,) float64 probability vectors
    returns: () float64
    """
    return torch.xlogy(p, D).sum() + torch.xlogy(q, 1.0 - D).sum()


def train_discriminator(x_real, x_fake, generator):
    """Train a one-hidden-layer tanh MLP discriminator (16 units) on 1-D samples by 200 steps of
    full-batch Adam (lr 0.05) on the GAN discriminator objective mean log D(real) + mean log(1 - D(fake)).

    x_real: (N,) float64; x_fake: (M,) float64; generator: torch.Generator (initialisation)
    returns: callable mapping x (K,) float64 -> D(x) (K,) float64 in (0, 1)
    """
    dt = x_real.dtype
    hidden, steps, lr = 16, 200, 0.05
    W1 = torch.randn(hidden, 1, generator=generator, dtype=dt).requires_grad_(True)
    b1 = torch.randn(hidden, generator=generator, dtype=dt).requires_grad_(True)
    w2 = (torch.randn(hidden, generator=generator, dtype=dt) / math.sqrt(hidden)).requires_grad_(True)
    b2 = torch.zeros((), dtype=dt, requires_grad=True)

    def logit(x):
        return torch.tanh(x[:, None] @ W1.T + b1) @ w2 + b2

    opt = torch.optim.Adam([W1, b1, w2, b2], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = (torch.nn.functional.softplus(-logit(x_real)).mean()
                + torch.nn.functional.softplus(logit(x_fake)).mean())
        loss.backward()
        opt.step()

    def D(x):
        with torch.no_grad():
            return torch.sigmoid(logit(torch.as_tensor(x, dtype=dt)))

    return D


# ---------------------------------------------------------------- exercise 3: disjoint supports
def parallel_lines_divergences(theta):
    """Arjovsky, Chintala & Bottou (2017), Example 1: P_0 = law of (0, Z), P_theta = law of (theta, Z),
    Z ~ U[0, 1]. Returns (W1, JS, KL, TV) = (|theta|, log 2, inf, 1) for theta != 0 and zeros for theta = 0.
    JS(P, Q) = 1/2 KL(P || M) + 1/2 KL(Q || M), M = (P + Q)/2; KL(P_theta || P_0).

    theta: float
    returns: (4,) float64
    """
    if theta == 0:
        return torch.zeros(4, dtype=torch.float64)
    return torch.tensor([abs(theta), math.log(2.0), math.inf, 1.0], dtype=torch.float64)


def vanishing_gradient(a, c, theta):
    """Generator gradient through the logistic discriminator D(x) = sigmoid(a x_1 + c) for the parallel
    lines (real (0, z), generated g_theta(z) = (theta, z), z ~ U[0, 1]), and the distance
    ||D - D*|| = sup |D - D*| + sup ||grad_x D|| over both supports, D* = 1 on the real line, 0 on the
    generated one (Arjovsky & Bottou 2017, Theorem 2.4 with M = 1).

    a, c, theta: float
    returns: (grad, eps), two () float64 -- d/dtheta E_z log(1 - D(g_theta(z))) = -a sigmoid(a theta + c),
             and eps
    """
    s_real = torch.sigmoid(torch.tensor(c, dtype=torch.float64))
    s_fake = torch.sigmoid(torch.tensor(a * theta + c, dtype=torch.float64))
    grad = -a * s_fake
    sup_val = torch.maximum(1.0 - s_real, s_fake)
    sup_grad = abs(a) * torch.maximum(s_real * (1 - s_real), s_fake * (1 - s_fake))
    return grad, sup_val + sup_grad


# ---------------------------------------------------------------- exercise 4: WGAN
def w1_dual_lp(x, a, y, b):
    """Kantorovich-Rubinstein dual of W1 between sum_i a_i delta_{x_i} and sum_j b_j delta_{y_j}
    (Arjovsky, Chintala & Bottou 2017, Sec. 3) as a linear program over the values f of a function
    on the n + m support points: max a.f_x - b.f_y s.t. f_u - f_v <= ||z_u - z_v||_2 for all pairs.

    x: (n, d) float64; a: (n,) float64 weights summing to 1; y: (m, d) float64; b: (m,) float64, sum 1
    returns: (value () float64, f_x (n,) float64, f_y (m,) float64)
    """
    Z = torch.cat([x, y]).numpy()
    n, m = x.shape[0], y.shape[0]
    K = n + m
    Dm = np.sqrt(((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1))
    iu, ju = np.where(~np.eye(K, dtype=bool))
    A = np.zeros((len(iu), K))
    A[np.arange(len(iu)), iu] = 1.0
    A[np.arange(len(iu)), ju] = -1.0
    cvec = -np.concatenate([a.numpy(), -b.numpy()])
    res = linprog(cvec, A_ub=A, b_ub=Dm[iu, ju], bounds=[(None, None)] * K, method="highs")
    f = torch.tensor(res.x, dtype=torch.float64)
    f = f - f[0]
    value = a @ f[:n] - b @ f[n:]
    return value, f[:n], f[n:]


def clipped_critic_w1(x_real, x_fake, clip, steps, lr, generator):
    """WGAN critic estimate (Arjovsky, Chintala & Bottou 2017, Algorithm 1, critic part only): an MLP
    f (1 -> 16 -> 16 -> 1, ReLU) trained by full-batch RMSprop to maximise
    mean f(x_real) - mean f(x_fake), all weights clipped to [-clip, clip] after every step.

    x_real: (N,) float64; x_fake: (M,) float64; clip: float; steps: int; lr: float
    generator: torch.Generator (initialisation, uniform in [-clip, clip])
    returns: float, mean f(x_real) - mean f(x_fake) of the trained critic
    """
    dt = x_real.dtype
    hidden = 16
    shapes = [(hidden, 1), (hidden,), (hidden, hidden), (hidden,), (1, hidden), (1,)]
    ps = [((2 * torch.rand(s, generator=generator, dtype=dt) - 1) * clip).requires_grad_(True) for s in shapes]

    def f(x):
        h = torch.relu(x[:, None] @ ps[0].T + ps[1])
        h = torch.relu(h @ ps[2].T + ps[3])
        return (h @ ps[4].T + ps[5])[:, 0]

    opt = torch.optim.RMSprop(ps, lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        (-(f(x_real).mean() - f(x_fake).mean())).backward()
        opt.step()
        with torch.no_grad():
            for p in ps:
                p.clamp_(-clip, clip)
    with torch.no_grad():
        return float(f(x_real).mean() - f(x_fake).mean())


# ---------------------------------------------------------------- exercise 5: WAE and MMD
def mmd_imq(x, y, scales):
    """Unbiased U-statistic estimate of MMD^2 with the inverse multiquadratics kernel
    k(u, v) = sum_C C / (C + ||u - v||^2) (Tolstikhin et al. 2017, WAE-MMD):
    mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j).

    x: (n, d) float64, n >= 2; y: (m, d) float64, m >= 2; scales: sequence of positive floats C
    returns: () float64
    """
    def gram(u, v):
        d2 = ((u[:, None, :] - v[None, :, :]) ** 2).sum(-1)
        return sum(C / (C + d2) for C in scales)

    n, m = x.shape[0], y.shape[0]
    Kxx, Kyy, Kxy = gram(x, x), gram(y, y), gram(x, y)
    sxx = (Kxx.sum() - torch.diagonal(Kxx).sum()) / (n * (n - 1))
    syy = (Kyy.sum() - torch.diagonal(Kyy).sum()) / (m * (m - 1))
    return sxx + syy - 2 * Kxy.mean()


def mmd2_rbf_gaussians(mu1, var1, mu2, var2, bandwidth):
    """Population MMD^2 between N(mu1, var1 I_d) and N(mu2, var2 I_d) with the RBF kernel
    k(u, v) = exp(-||u - v||^2 / (2 bandwidth^2)): with g = bandwidth^2,
    (g/(g + 2 var1))^(d/2) + (g/(g + 2 var2))^(d/2) - 2 (g/(g + var1 + var2))^(d/2) exp(-||mu1 - mu2||^2 / (2 (g + var1 + var2))).

    mu1, mu2: (d,) float64; var1, var2: float > 0; bandwidth: float > 0
    returns: () float64
    """
    d = mu1.shape[0]
    g = bandwidth**2
    diff2 = ((mu1 - mu2) ** 2).sum()

    def ek(s, dist2):
        return (g / (g + s)) ** (d / 2) * torch.exp(-dist2 / (2 * (g + s)))

    zero = torch.zeros((), dtype=mu1.dtype)
    return ek(2 * var1, zero) + ek(2 * var2, zero) - 2 * ek(var1 + var2, diff2)


def mmd_std_exponents(shift, scales, generator):
    """Experiment: the standard deviation of ``mmd_imq`` on n + n samples scales as n^alpha. Returns the
    exponents fitted by least squares on log-log axes, under the null (x, y ~ N(0, I_2)) and under the
    alternative (x ~ N(0, I_2), y ~ N((shift, 0), I_2)). Theory (Gretton et al. 2012): alpha = -1 under
    the null (degenerate U-statistic), -1/2 under the alternative.

    shift: float > 0; scales: sequence of positive floats (IMQ scales); generator: torch.Generator
    returns: (alpha_null, alpha_alt), two floats
    """
    ns = [10, 20, 40, 80]
    reps = 300
    out = []
    for delta in (0.0, shift):
        stds = []
        for n in ns:
            x = torch.randn(reps, n, 2, generator=generator, dtype=torch.float64)
            y = torch.randn(reps, n, 2, generator=generator, dtype=torch.float64)
            y[..., 0] += delta
            # a batched copy of mmd_imq over the reps independent pairs of samples
            Kxx, Kyy, Kxy = (sum(C / (C + torch.cdist(u, v) ** 2) for C in scales)
                             for u, v in ((x, x), (y, y), (x, y)))
            off = (1 - torch.eye(n, dtype=torch.float64))
            vals = ((Kxx * off).sum((1, 2)) + (Kyy * off).sum((1, 2))) / (n * (n - 1)) - 2 * Kxy.mean((1, 2))
            stds.append(float(vals.std()))
        out.append(float(np.polyfit(np.log(ns), np.log(stds), 1)[0]))
    return out[0], out[1]


# ---------------------------------------------------------------- exercise 6: semi-discrete OT
def sdot_energy_grad(h, Y, x, nu):
    """Monte-Carlo estimate of the convex energy of semi-discrete OT (Gu et al. 2016; Lei et al. 2020;
    An et al. 2020, AE-OT) E(h) = mean_i max_j (<x_i, y_j> + h_j) - sum_j nu_j h_j and its
    gradient w(h) - nu, w_j(h) = fraction of samples whose maximiser is j (the mu-mass of power cell j).

    h: (m,) float64; Y: (m, D) float64 target points; x: (N, D) float64 samples of mu; nu: (m,) float64, sum 1
    returns: (E () float64, grad (m,) float64)
    """
    S = x @ Y.T + h
    best, idx = S.max(dim=1)
    w = torch.bincount(idx, minlength=Y.shape[0]).to(h.dtype) / x.shape[0]
    return best.mean() - nu @ h, w - nu


def solve_sdot(Y, nu, n_samples, steps, lr, generator):
    """Minimise the semi-discrete OT energy by Monte-Carlo gradient descent with Adam (An et al. 2020,
    AE-OT): each step draws ``n_samples`` fresh points of mu = uniform on [-1, 1]^D.

    Y: (m, D) float64; nu: (m,) float64 positive, sum 1; n_samples, steps: int; lr: float
    generator: torch.Generator
    returns: h (m,) float64, the Brenier potential's heights; the map is T(x) = y_{argmax_j <x, y_j> + h_j}
    """
    m, D = Y.shape
    h = torch.zeros(m, dtype=Y.dtype, requires_grad=True)
    opt = torch.optim.Adam([h], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1.0 + 10.0 * t / steps))
    for _ in range(steps):
        x = 2 * torch.rand(n_samples, D, generator=generator, dtype=Y.dtype) - 1
        _, g = sdot_energy_grad(h.detach(), Y, x, nu)
        opt.zero_grad()
        h.grad = g
        opt.step()
        sched.step()
    out = h.detach().clone()
    return out - out.mean()
