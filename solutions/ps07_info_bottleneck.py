"""ps07 -- Information Bottleneck Theory: reference implementations.

Conventions (as in the notebook): all information quantities are in **nats**; discrete
distributions are ``numpy`` float64 arrays (a joint ``p_xy`` has shape (|X|, |Y|), rows indexed
by x); continuous representations and losses are ``torch`` tensors. Randomness is an argument.
"""

from __future__ import annotations

import numpy as np
import scipy.special
import torch
import torch.nn.functional as F

__all__ = [
    "entropy",
    "kl",
    "mutual_information",
    "blahut_arimoto",
    "bernoulli_rate_distortion",
    "iterative_ib",
    "ib_threshold",
    "estimate_ib_transition",
    "binned_mi",
    "kde_mi_upper",
    "gaussian_kl",
    "vib_loss",
    "info_dropout_kl",
]


# ---------------------------------------------------------------- exercise 1
def entropy(p):
    """Shannon entropy in nats of the distributions along the last axis (0 log 0 = 0).

    p: (..., K) float64, nonnegative, summing to 1 along the last axis
    returns: (...) float64
    """
    return scipy.special.entr(np.asarray(p, dtype=float)).sum(axis=-1)


def kl(p, q):
    """Kullback-Leibler divergence KL(p || q) in nats along the last axis.

    p, q: (..., K) float64 distributions, q > 0 wherever p > 0
    returns: (...) float64
    """
    return scipy.special.rel_entr(np.asarray(p, dtype=float), np.asarray(q, dtype=float)).sum(axis=-1)


def mutual_information(p_xy):
    """Mutual information I(X;Y) in nats of a joint distribution (Cover & Thomas, ch. 2).

    p_xy: (|X|, |Y|) float64, nonnegative, summing to 1
    returns: () float64
    """
    p_xy = np.asarray(p_xy, dtype=float)
    return float(entropy(p_xy.sum(axis=1)) + entropy(p_xy.sum(axis=0)) - entropy(p_xy.ravel()))


def blahut_arimoto(p_x, d, s, n_iter):
    """Blahut-Arimoto algorithm for the rate-distortion function (Blahut 1972): the point of the
    R(D) curve where its slope is -s, after ``n_iter`` alternating updates started from the
    uniform reproduction distribution q(xhat).

    p_x: (n,) float64 source distribution, positive
    d:   (n, m) float64 distortion d(x, xhat) >= 0
    s:   float >= 0, the Lagrange multiplier of E[d] in min I(X; Xhat) + s E[d]
    n_iter: int >= 1
    returns: (D, R) two Python floats, distortion E[d] and rate I(X; Xhat) in nats of the
             final conditional Q(xhat | x)
    """
    p_x = np.asarray(p_x, dtype=float)
    d = np.asarray(d, dtype=float)
    q = np.full(d.shape[1], 1.0 / d.shape[1])
    for _ in range(n_iter):
        logits = np.log(q)[None, :] - s * d
        logits -= logits.max(axis=1, keepdims=True)
        Q = np.exp(logits)
        Q /= Q.sum(axis=1, keepdims=True)
        q = p_x @ Q
    D = float((p_x[:, None] * Q * d).sum())
    R = float((p_x * kl(Q, q[None, :])).sum())
    return D, R


def bernoulli_rate_distortion(p, D):
    """Rate-distortion function R(D) in nats of a Bernoulli(p) source under Hamming distortion
    (Shannon 1959; Cover & Thomas, Thm. 10.3.1).

    p: float in [0, 1]
    D: (k,) float64 distortions >= 0
    returns: (k,) float64
    """
    D = np.asarray(D, dtype=float)

    Dmax = min(p, 1 - p)
    Dc = np.minimum(D, Dmax)
    hb_p = entropy(np.array([p, 1 - p]))
    hb_D = entropy(np.stack([Dc, 1 - Dc], axis=-1))
    return np.where(D < Dmax, hb_p - hb_D, 0.0)


# ---------------------------------------------------------------- exercise 2
def iterative_ib(p_xy, beta, q0, n_iter):
    """The iterative information bottleneck algorithm (Tishby, Pereira & Bialek 2000, Thm. 5):
    ``n_iter`` updates of the self-consistent equations, starting from the encoder ``q0``.

    p_xy: (|X|, |Y|) float64 joint distribution with p(x) > 0 for every x
    beta: float > 0, trade-off in L = I(X;T) - beta I(T;Y)
    q0:   (|X|, K) float64 initial encoder q(t|x), rows sum to 1, every entry > 0
    n_iter: int >= 0
    returns: enc (|X|, K) float64, the encoder after n_iter updates (rows sum to 1);
             lagr (n_iter + 1,) float64, L of the encoder before the first and after each update
    """
    p_xy = np.asarray(p_xy, dtype=float)
    p_x = p_xy.sum(axis=1)
    p_y_x = p_xy / p_x[:, None]
    enc = np.array(q0, dtype=float)
    hist = []
    for it in range(n_iter + 1):
        hist.append(mutual_information(p_x[:, None] * enc) - beta * mutual_information(enc.T @ p_xy))
        if it == n_iter:
            break
        q_t = p_x @ enc
        live = q_t > 0
        q_y_t = (enc[:, live].T @ p_xy) / q_t[live, None]
        # KL(p(y|x) || q(y|t)) for every (x, t)
        dist = kl(p_y_x[:, None, :], q_y_t[None, :, :])
        logits = np.log(q_t[live])[None, :] - beta * dist
        logits -= logits.max(axis=1, keepdims=True)
        new = np.zeros_like(enc)
        new[:, live] = np.exp(logits)
        enc = new / new.sum(axis=1, keepdims=True)
    return enc, np.array(hist)


# ---------------------------------------------------------------- exercise 3
def ib_threshold(p_xy):
    """The beta at which the trivial encoder q(t|x) = q(t) stops being a local minimum of the IB
    Lagrangian I(X;T) - beta I(T;Y) (exercise 3a; second-order analysis as in Wu, Fischer, Chuang
    & Tegmark 2019).

    p_xy: (|X|, |Y|) float64 joint distribution, positive marginals
    returns: float (math.inf when X and Y are independent)
    """
    p_xy = np.asarray(p_xy, dtype=float)
    B = p_xy / np.sqrt(np.outer(p_xy.sum(axis=1), p_xy.sum(axis=0)))
    sv = np.linalg.svd(B, compute_uv=False)
    rho2 = sv[1] ** 2 if len(sv) > 1 else 0.0
    return float(1.0 / rho2) if rho2 > 1e-13 else float("inf")


def estimate_ib_transition(p_xy, generator):
    """Locate by experiment, with ``iterative_ib`` and no closed form, the beta at which the IB
    starts to learn (exercise 3b).

    p_xy: (|X|, |Y|) float64 joint distribution
    generator: torch.Generator, the only source of randomness
    returns: float, the estimated critical beta
    """
    # Design: start every run from the same tiny random perturbation of a two-cluster trivial encoder;
    # near the threshold the perturbation is multiplied by about beta / beta* per update, so it
    # decays below and grows above. "Learned" = I(X;T) grew 100-fold (the perturbation 10-fold)
    # in 400 updates, enough from 1% above the threshold on; bisection on a log-spaced beta grid.
    p_xy = np.asarray(p_xy, dtype=float)
    n_x = p_xy.shape[0]
    p_x = p_xy.sum(axis=1)
    betas = np.exp(np.linspace(np.log(1.0), np.log(20.0), 300))
    q0 = 0.5 + 1e-5 * torch.randn(n_x, generator=generator, dtype=torch.float64).numpy()
    q0 = np.stack([q0, 1 - q0], axis=1)
    i_start = mutual_information(p_x[:, None] * q0)
    lo, hi = 0, len(betas) - 1

    def learns(beta):
        enc, _ = iterative_ib(p_xy, beta, q0, 400)
        return mutual_information(p_x[:, None] * enc) > 100 * i_start

    if not learns(betas[hi]):
        return float("inf")
    while hi - lo > 1:  # bisection on the grid: learning is monotone in beta
        mid = (lo + hi) // 2
        if learns(betas[mid]):
            hi = mid
        else:
            lo = mid
    return float(betas[hi])


# ---------------------------------------------------------------- exercise 4
def binned_mi(activations, labels, n_bins):
    """Information-plane coordinates of one layer by binning (Shwartz-Ziv & Tishby 2017, Sec. 3):
    every activation is put in one of ``n_bins`` equal-width bins spanning [min, max] of all
    entries of ``activations`` (the maximum goes to the last bin); T is the row's bin pattern;
    the N rows are N distinct inputs X, each of probability 1/N.

    activations: (N, D) float32 or float64, one row per input
    labels: (N,) int64, the label Y of each input
    n_bins: int >= 1
    returns: (I_XT, I_TY) two Python floats in nats
    """
    a = np.asarray(activations, dtype=np.float64)
    lo, hi = a.min(), a.max()
    if hi > lo:
        idx = np.clip(np.floor((a - lo) / (hi - lo) * n_bins), 0, n_bins - 1).astype(np.int64)
    else:
        idx = np.zeros(a.shape, dtype=np.int64)
    _, t = np.unique(idx, axis=0, return_inverse=True)
    t = t.ravel()
    _, y = np.unique(np.asarray(labels), return_inverse=True)
    y = y.ravel()
    N = a.shape[0]
    joint = np.zeros((t.max() + 1, y.max() + 1))
    np.add.at(joint, (t, y), 1.0 / N)
    return float(entropy(joint.sum(axis=1))), mutual_information(joint)


# ---------------------------------------------------------------- exercise 5
def kde_mi_upper(h, noise_var):
    """Pairwise-distance (KL) upper bound on I(X;T), T = h(X) + N(0, noise_var I), X uniform on
    the N rows of h (Kolchinsky & Tracey 2017; used by Saxe et al. 2019 and by the nonlinear IB of
    Kolchinsky, Tracey & Wolpert 2019).

    h: (N, D) float32 or float64 tensor, the deterministic part of the representation
    noise_var: float > 0
    returns: () tensor of h's dtype, in nats, differentiable in h
    """
    N = h.shape[0]
    d2 = ((h[:, None, :] - h[None, :, :]) ** 2).sum(dim=-1)
    lse = torch.logsumexp(-d2 / (2 * noise_var), dim=1)
    return -(lse - np.log(N)).mean()


# ---------------------------------------------------------------- exercise 6
def gaussian_kl(mu, logvar):
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per row (the rate term of Alemi et al. 2016).

    mu, logvar: (N, K) float32 or float64 tensors
    returns: (N,) tensor of mu's dtype, in nats
    """
    return 0.5 * (mu * mu + logvar.exp() - 1 - logvar).sum(dim=-1)


def vib_loss(mu, logvar, logits, y, beta):
    """Deep variational information bottleneck loss (Alemi et al. 2016, eq. of J_IB with a
    standard normal prior r(z)): mean cross-entropy of the decoder plus beta times the mean KL
    of the encoder to the prior.

    mu, logvar: (N, K) float tensors, Gaussian encoder of each example
    logits: (N, C) float tensor, decoder output for one sample z of each example
    y: (N,) int64 labels
    beta: float >= 0
    returns: () tensor
    """
    return F.cross_entropy(logits, y) + beta * gaussian_kl(mu, logvar).mean()


def info_dropout_kl(log_f, alpha, mu0, sigma0):
    """KL divergence of information dropout (Achille & Soatto 2018, Sec. 5) with a log-normal
    prior: z = f * eps, log eps ~ N(0, alpha^2), against log z ~ N(mu0, sigma0^2) in the prior.

    log_f: (N, D) float tensor, log of the (positive) activation f(x)
    alpha: (N, D) float tensor > 0, std of the log-noise
    mu0, sigma0: floats (sigma0 > 0), parameters of the prior of log z
    returns: (N, D) tensor, elementwise KL in nats
    """
    return torch.log(sigma0 / alpha) + (alpha**2 + (log_f - mu0) ** 2) / (2 * sigma0**2) - 0.5
