"""ps06 -- Vulnerability of Deep Neural Networks: reference implementations.

Conventions (as in the notebook): a classifier ``model`` is a ``torch.nn.Module`` mapping a batch
(N, D) float64 to logits (N, K); labels are int64. Images live in [0, 1]^D; time series are
unbounded. A black-box ``query`` maps a batch (M, D) float64 to class probabilities (M, K) and
costs M queries. Randomness comes in as a ``torch.Generator``.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.special
import scipy.stats
import torch
import torch.nn.functional as F

__all__ = [
    "fgsm",
    "pgd_linf",
    "pgd_l2",
    "linear_min_perturbation",
    "linear_latent_robustness",
    "linear_rin_cdf",
    "fawzi_bound",
    "generator_lipschitz",
    "hemisphere_expansion",
    "levy_bound",
    "eps_for_fraction",
    "measure_eps_exponent",
    "nattack",
    "dct_lowfreq_basis",
    "subspace_random_search",
    "semantic_gap_attack",
    "universal_perturbation",
    "adam_update",
    "fgsm_adversarial_training",
]


# ---------------------------------------------------------------- exercise 1
def fgsm(model, x, y, eps, targeted=False):
    """Fast gradient sign method (Goodfellow et al. 2015), l_inf budget, clipped to [0, 1].

    model: nn.Module, (N, D) float64 -> logits (N, K); x: (N, D) float64 in [0, 1];
    y: (N,) int64, true labels (untargeted) or target labels (targeted); eps: float >= 0
    returns: (N, D) float64, the adversarial inputs
    """
    x = x.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    (g,) = torch.autograd.grad(loss, x)
    direction = -g.sign() if targeted else g.sign()
    return (x.detach() + eps * direction).clamp(0.0, 1.0)


def pgd_linf(model, x, y, eps, alpha, steps, x0, targeted=False):
    """Projected gradient descent in the l_inf ball (Madry et al. 2018; BIM when x0 = x).

    x, x0: (N, D) float64, x in [0, 1], x0 the starting point (projected first);
    y: (N,) int64; eps, alpha: float; steps: int >= 0
    returns: (N, D) float64, the iterate after ``steps`` steps, in the eps-ball of x and in [0, 1]
    """
    x = x.detach()
    lo, hi = (x - eps).clamp(min=0.0), (x + eps).clamp(max=1.0)
    xa = torch.min(torch.max(x0.detach(), lo), hi)
    for _ in range(steps):
        xa = xa.clone().requires_grad_(True)
        loss = F.cross_entropy(model(xa), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, xa)
        xa = xa.detach() + (-alpha if targeted else alpha) * g.sign()
        xa = torch.min(torch.max(xa, lo), hi)
    return xa


def pgd_l2(model, x, y, eps, alpha, steps, x0):
    """Untargeted projected gradient ascent in the l2 ball (Madry et al. 2018): a step of length
    alpha along each sample's normalized gradient, projection onto the l2 ball, then clipping to [0, 1].

    x, x0: (N, D) float64; y: (N,) int64; eps, alpha: float; steps: int >= 0
    returns: (N, D) float64
    """
    x = x.detach()

    def project(z):
        d = z - x
        n = d.norm(dim=1, keepdim=True)
        d = d * torch.clamp(eps / n.clamp_min(1e-300), max=1.0)
        return (x + d).clamp(0.0, 1.0)

    xa = project(x0.detach())
    for _ in range(steps):
        xa = xa.clone().requires_grad_(True)
        loss = F.cross_entropy(model(xa), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, xa)
        g = g / g.norm(dim=1, keepdim=True).clamp_min(1e-300)
        xa = project(xa.detach() + alpha * g)
    return xa


def linear_min_perturbation(w, b, x, p):
    """Smallest l_p perturbation that puts x on the decision boundary w . z + b = 0 of a linear
    binary classifier (no box constraint).

    w: (D,) float64, nonzero; b: float; x: (D,) float64; p: 1, 2 or float('inf')
    returns: (eps, delta) -- eps () float64, the minimal l_p norm; delta (D,) float64, a minimiser
    """
    m = w @ x + b
    if p == 2:
        delta = -m * w / (w @ w)
    elif p == 1:
        i = torch.argmax(w.abs())
        delta = torch.zeros_like(w)
        delta[i] = -m / w[i]
    else:
        delta = -m / w.abs().sum() * w.sign()
    q = {1: math.inf, 2: 2.0}.get(p, 1.0)
    return m.abs() / torch.linalg.vector_norm(w, ord=q), delta


# ---------------------------------------------------------------- exercise 2
def linear_latent_robustness(W, c, Z):
    """Latent-space robustness of the linear classifier z -> argmax_k (W z + c)_k: the l2 distance
    from each z to the nearest point assigned another class (Fawzi et al. 2018).

    W: (K, d) float64, distinct rows; c: (K,) float64; Z: (N, d) float64
    returns: (N,) float64
    """
    S = Z @ W.T + c
    k = S.argmax(dim=1)
    gap = S.gather(1, k[:, None]) - S
    dist = (W[k][:, None, :] - W[None, :, :]).norm(dim=2)
    ratio = gap / dist.clamp_min(1e-300)
    ratio[torch.arange(len(k)), k] = math.inf
    return ratio.min(dim=1).values


def linear_rin_cdf(A, w, b, eta):
    """P(r_in(x) <= eta) for x = A z, z ~ N(0, I_d), and the classifier sign(w . x + b), where
    r_in(x) is the distance from x to the nearest point of the image of A that is classified
    differently (in-distribution robustness, Fawzi et al. 2018).

    A: (D, d) float64 of rank d; w: (D,) float64 with A^T w != 0; b: float; eta: (M,) float64 >= 0
    returns: (M,) float64
    """
    s = torch.linalg.vector_norm(A.T @ w)
    Q, _ = torch.linalg.qr(A)
    q = torch.linalg.vector_norm(Q.T @ w)
    normal = torch.distributions.Normal(torch.zeros((), dtype=A.dtype), torch.ones((), dtype=A.dtype))
    return normal.cdf((eta * q - b) / s) - normal.cdf((-eta * q - b) / s)


def fawzi_bound(eta, lip):
    """Lower bound of Fawzi et al. (2018, Thm. 1) on P(r_in(x) <= eta) for a Gaussian latent and a
    generator with modulus of continuity omega(t) = lip * t, clipped at 0.

    eta: (M,) float64 >= 0; lip: float > 0
    returns: (M,) float64 in [0, 1]
    """
    return (1.0 - math.sqrt(math.pi / 2) * torch.exp(-((eta / lip) ** 2) / 2)).clamp(min=0.0)


def generator_lipschitz(generator):
    """A certified Lipschitz constant (l2 -> l2) of a generator nn.Sequential of nn.Linear and
    nn.Tanh layers, computed from its weights.

    generator: nn.Sequential of nn.Linear / nn.Tanh, float64
    returns: float
    """
    lip = 1.0
    for layer in generator:
        if isinstance(layer, torch.nn.Linear):
            lip *= float(torch.linalg.matrix_norm(layer.weight.detach(), ord=2))
    return lip


# ---------------------------------------------------------------- exercise 3
def hemisphere_expansion(n, eps):
    """Fraction of the unit sphere S^{n-1} in R^n within geodesic distance eps of a hemisphere.

    n: int >= 2; eps: (M,) numpy float64 >= 0 (radians)
    returns: (M,) numpy float64
    """
    e = np.minimum(np.asarray(eps, dtype=np.float64), np.pi / 2)
    a = (n - 1) / 2
    return 1.0 - scipy.special.betainc(a, a, (1.0 - np.sin(e)) / 2)


def levy_bound(n, eps):
    """Levy's concentration bound used by Shafahi et al. (2018): lower bound on the fraction
    of S^{n-1} within geodesic distance eps of any set of measure >= 1/2.

    n: int >= 2; eps: (M,) numpy float64 >= 0
    returns: (M,) numpy float64
    """
    eps = np.asarray(eps, dtype=np.float64)
    return 1.0 - np.sqrt(np.pi / 8) * np.exp(-(n - 1) * eps**2 / 2)


def eps_for_fraction(n, frac):
    """Smallest geodesic radius eps such that every subset of S^{n-1} of measure >= 1/2 has at least a
    fraction ``frac`` of the sphere within distance eps.

    n: int >= 2; frac: float in [1/2, 1)
    returns: float
    """
    a = (n - 1) / 2
    u = scipy.special.betaincinv(a, a, 1.0 - frac)
    return float(np.arcsin(np.clip(1.0 - 2.0 * u, 0.0, 1.0)))


def measure_eps_exponent(frac):
    """Exponent beta of eps_for_fraction(n, frac) ~ C n^beta as n -> infinity, measured numerically.

    frac: float in (1/2, 1)
    returns: float
    """
    ns = np.array([1000, 2000, 4000, 8000, 16000, 32000])
    eps = np.array([eps_for_fraction(int(n), frac) for n in ns])
    return float(np.polyfit(np.log(ns), np.log(eps), 1)[0])


# ---------------------------------------------------------------- exercise 4
def nattack(query, x, y, eps, generator, pop_size=20, sigma=0.1, lr=0.02, max_queries=2000):
    """NATTACK (Li et al. 2019): black-box l_inf attack that learns the mean of an isotropic Gaussian
    in tanh space by natural evolution strategies.

    query: callable (an nn.Module) (M, D) float64 -> (M, K) float64 probabilities, M queries per call;
    x: (D,) float64 in [0, 1]; y: int, true label; eps: float; generator: torch.Generator;
    pop_size: int; sigma, lr: float; max_queries: int
    returns: (x_adv (D,) float64 in the eps-ball of x and in [0, 1], success bool, queries int)
    """
    x = x.detach()
    z0 = torch.atanh((2 * x - 1).clamp(-1 + 1e-6, 1 - 1e-6))
    D = x.numel()
    mu = 1e-3 * torch.randn(D, generator=generator, dtype=x.dtype)

    def to_input(z):
        return x + ((torch.tanh(z) + 1) / 2 - x).clamp(-eps, eps)

    queries = 0
    best = to_input(z0 + mu)
    while queries + pop_size + 1 <= max_queries:
        cand = to_input(z0 + mu)
        queries += 1
        if int(query(cand[None]).argmax(dim=1)[0]) != y:
            return cand, True, queries
        noise = torch.randn(pop_size, D, generator=generator, dtype=x.dtype)
        X = to_input(z0 + mu + sigma * noise)
        P = query(X)
        queries += pop_size
        pred = P.argmax(dim=1)
        if (pred != y).any():
            return X[int(torch.nonzero(pred != y)[0, 0])], True, queries
        logp = torch.log(P.clamp_min(1e-30))
        other = logp.clone()
        other[:, y] = -math.inf
        loss = (logp[:, y] - other.max(dim=1).values).clamp(min=0.0)
        zs = (loss - loss.mean()) / (loss.std() + 1e-7)
        mu = mu - lr / (pop_size * sigma) * (zs @ noise)
        best = cand
    return best, False, queries


# ---------------------------------------------------------------- exercise 5
def dct_lowfreq_basis(length, k):
    """Orthonormal basis of the k lowest-frequency DCT-II components of signals of a given length
    (the projection subspace of PPBA, Li et al. 2020).

    length: int; k: int in [1, length]
    returns: (length, k) float64 with orthonormal columns
    """
    t = torch.arange(length, dtype=torch.float64)
    f = torch.arange(k, dtype=torch.float64)
    B = torch.cos(math.pi * (t[:, None] + 0.5) * f[None, :] / length)
    return B / B.norm(dim=0, keepdim=True)


def subspace_random_search(query, x, y, eps, basis, max_queries, step, generator):
    """Greedy random search in span(basis) under an l2 budget (the projection part of PPBA,
    Li et al. 2020): propose a random step in the subspace, keep it if the true class's probability
    margin drops; stop at the first misclassified query.

    query: callable (M, D) float64 -> (M, K) float64; x: (D,) float64; y: int; eps: float;
    basis: (D, k) float64, orthonormal columns; max_queries: int >= 1; step: float;
    generator: torch.Generator
    returns: (x_adv (D,) float64 with x_adv - x in span(basis) and ||x_adv - x|| <= eps,
              success bool, queries int)
    """
    x = x.detach()

    def margin(p):
        other = p.clone()
        other[y] = -math.inf
        return float(p[y] - other.max())

    P = query(x[None])[0]
    queries = 1
    if int(P.argmax()) != y:
        return x.clone(), True, queries
    delta = torch.zeros_like(x)
    best = margin(P)
    while queries < max_queries:
        u = basis @ torch.randn(basis.shape[1], generator=generator, dtype=x.dtype)
        cand = delta + step * u / u.norm()
        cand = cand * min(1.0, eps / float(cand.norm()))
        P = query((x + cand)[None])[0]
        queries += 1
        if int(P.argmax()) != y:
            return x + cand, True, queries
        m = margin(P)
        if m < best:
            delta, best = cand, m
    return x + delta, False, queries


# ---------------------------------------------------------------- exercise 6
def semantic_gap_attack(features, centroids, x, y, eps, alpha, steps):
    """Untargeted l_inf attack that pushes the feature representation away from the centroid of the
    true class (the semantic-gap objective of Wu et al. 2019, simplified), by signed gradient ascent
    started at x; no range constraint (time series).

    features: nn.Module (N, D) -> (N, H); centroids: (K, H) float64; x: (N, D) float64;
    y: (N,) int64; eps, alpha: float; steps: int >= 0
    returns: (N, D) float64
    """
    x = x.detach()
    xa = x.clone()
    for _ in range(steps):
        xa = xa.clone().requires_grad_(True)
        gap = ((features(xa) - centroids[y]) ** 2).sum()
        (g,) = torch.autograd.grad(gap, xa)
        xa = x + (xa.detach() + alpha * g.sign() - x).clamp(-eps, eps)
    return xa


def universal_perturbation(model, X, y, eps, alpha, steps):
    """One l_inf perturbation for all inputs (Rathore et al. 2020; a projected-gradient form of
    Moosavi-Dezfooli et al. 2017): signed gradient ascent on the summed cross-entropy of X + v over v, projected onto the
    eps-ball, started at v = 0; no range constraint (time series).

    model: nn.Module (N, D) -> (N, K); X: (N, D) float64; y: (N,) int64; eps, alpha: float;
    steps: int >= 0
    returns: (D,) float64
    """
    v = torch.zeros(X.shape[1], dtype=X.dtype)
    for _ in range(steps):
        v = v.clone().requires_grad_(True)
        loss = F.cross_entropy(model(X + v), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, v)
        v = (v.detach() + alpha * g.sign()).clamp(-eps, eps)
    return v


def adam_update(params, grads, state, lr):
    """One Adam step (Kingma & Ba 2015, torch.optim.Adam's defaults: betas (0.9, 0.999), eps 1e-8) on the
    tensors ``params``, in place. The notebook's read-only victims cell holds the same helper.

    params, grads: lists of tensors of equal shapes; state: dict, empty before the first step
    (it keeps the step count and the moment estimates); lr: float
    """
    if not state:
        state["t"] = 0
        state["m"] = [torch.zeros_like(p) for p in params]
        state["v"] = [torch.zeros_like(p) for p in params]
    state["t"] += 1
    t = state["t"]
    with torch.no_grad():
        for p, g_, m_, v_ in zip(params, grads, state["m"], state["v"]):
            m_.mul_(0.9).add_(g_, alpha=0.1)
            v_.mul_(0.999).addcmul_(g_, g_, value=0.001)
            p.sub_(lr * (m_ / (1 - 0.9**t)) / ((v_ / (1 - 0.999**t)).sqrt() + 1e-8))


def fgsm_adversarial_training(model, X, y, eps, lr, steps):
    """FGSM adversarial training (Goodfellow et al. 2015; with FGSM examples on time series in
    Rathore et al. 2020): full-batch Adam (``adam_update``) on the mean cross-entropy of the FGSM
    examples of the *current* model, crafted afresh at every step and clipped to [0, 1].

    model: nn.Module (N, D) float64 -> (N, K) logits, parameters requiring grad, trained in place;
    X: (N, D) float64 in [0, 1]; y: (N,) int64; eps: float >= 0 (0: ordinary training);
    lr: float; steps: int >= 0
    returns: (steps,) float64, the mean cross-entropy on the adversarial batch at each step,
    before that step's update
    """
    params = list(model.parameters())
    X = X.detach()
    state = {}
    losses = torch.zeros(steps, dtype=X.dtype)
    for t in range(steps):
        xr = X.clone().requires_grad_(True)
        (gx,) = torch.autograd.grad(F.cross_entropy(model(xr), y), xr)
        xa = (X + eps * gx.sign()).clamp(0.0, 1.0)
        loss = F.cross_entropy(model(xa), y)
        grads = torch.autograd.grad(loss, params)
        adam_update(params, grads, state, lr)
        losses[t] = loss.detach()
    return losses
