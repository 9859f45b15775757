"""ps05 -- Multilayer Convolutional Sparse Coding: reference implementations.

Conventions (as in the notebook). Every tensor is ``torch.float64``. The Lasso objective is
F(gamma) = 1/2 ||x - D gamma||^2 + lam ||gamma||_1. A one-dimensional convolutional dictionary with
``m`` filters of ``c`` channels and length ``n`` acting on signals of length ``N`` (periodic boundary)
is the (c N, m N) matrix whose column ``j N + i`` is filter ``j`` placed at positions i, ..., i + n - 1
(mod N) of every channel: signals (c, N) and representations (m, N) are flattened channel-major
(``.reshape(-1)``). Then D^T x is ``torch.nn.functional.conv1d`` of the circularly padded signal.
Batched signals have the batch first: X of shape (B, c N).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "soft_threshold",
    "ista",
    "fista",
    "lasso_duality_gap",
    "dictionary_learning",
    "conv_dictionary",
    "mutual_coherence",
    "conv_coherence",
    "stripe_norm",
    "layered_thresholding",
    "threshold_interval",
    "critical_contrast",
    "layered_basis_pursuit",
    "res_csc_block",
    "csc_deconvolution",
    "msd_dilations",
    "msd_param_count",
    "msd_receptive_field",
]


# ---------------------------------------------------------------- exercise 1
def soft_threshold(v, t):
    """Proximal operator of t ||.||_1: sign(v) max(|v| - t, 0), elementwise.

    v: tensor (any shape) float64; t: float or tensor broadcastable to v, >= 0
    returns: tensor of v's shape
    """
    return torch.sign(v) * torch.clamp(v.abs() - t, min=0.0)


def ista(D, x, lam, steps, gamma0=None):
    """ISTA (Daubechies, Defrise & De Mol 2004) on F(gamma) = 1/2 ||x - D gamma||^2 + lam ||gamma||_1
    with the constant step 1/L, L = ||D||_2^2 (largest eigenvalue of D^T D).

    D: (d, M) float64; x: (d,) float64; lam: float >= 0; steps: int >= 0
    gamma0: (M,) float64 starting point, default zeros
    returns: (steps + 1, M) float64, row k = k-th iterate (row 0 = gamma0)
    """
    L = torch.linalg.matrix_norm(D, 2) ** 2
    g = torch.zeros(D.shape[1], dtype=D.dtype) if gamma0 is None else gamma0.clone()
    out = [g]
    for _ in range(steps):
        g = soft_threshold(g - D.T @ (D @ g - x) / L, lam / L)
        out.append(g)
    return torch.stack(out)


def fista(D, x, lam, steps):
    """FISTA (Beck & Teboulle 2009, constant step 1/L) on the Lasso objective, from gamma_0 = 0:
    y_1 = gamma_0, t_1 = 1; gamma_k = prox(y_k - grad f(y_k) / L), t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2,
    y_{k+1} = gamma_k + (t_k - 1) / t_{k+1} (gamma_k - gamma_{k-1}).

    D: (d, M) float64; x: (d,) float64; lam: float >= 0; steps: int >= 0
    returns: (steps + 1, M) float64, row k = gamma_k (row 0 = zeros)
    """
    L = torch.linalg.matrix_norm(D, 2) ** 2
    g = torch.zeros(D.shape[1], dtype=D.dtype)
    y, t = g, 1.0
    out = [g]
    for _ in range(steps):
        g_new = soft_threshold(y - D.T @ (D @ y - x) / L, lam / L)
        t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
        y = g_new + (t - 1) / t_new * (g_new - g)
        g, t = g_new, t_new
        out.append(g)
    return torch.stack(out)


def lasso_duality_gap(D, x, lam, gamma):
    """Duality gap F(gamma) - G(nu) of the Lasso at ``gamma``, with G(nu) = x^T nu - 1/2 ||nu||^2 the dual
    objective (feasible set ||D^T nu||_inf <= lam) and nu = s r the best dual-feasible multiple of the
    residual r = x - D gamma: s = clip(x^T r / ||r||^2, -lam / ||D^T r||_inf, lam / ||D^T r||_inf).

    D: (d, M) float64; x: (d,) float64; lam: float > 0; gamma: (M,) float64
    returns: () float64, >= F(gamma) - F* >= 0
    """
    r = x - D @ gamma
    primal = 0.5 * (r @ r) + lam * gamma.abs().sum()
    rr = r @ r
    if float(rr) == 0.0:  # x = D gamma: nu = 0 is the best multiple, G(0) = 0
        return primal
    cap = lam / (D.T @ r).abs().max()
    s = torch.clamp((x @ r) / rr, -cap, cap)
    nu = s * r
    return primal - (x @ nu - 0.5 * (nu @ nu))


def dictionary_learning(X, n_atoms, lam, n_iter, generator):
    """Dictionary learning by alternating minimisation of sum_p 1/2 ||x_p - D gamma_p||^2 + lam ||gamma_p||_1
    over codes (FISTA, 50 steps, warm-started) and the dictionary (MOD least-squares update, columns
    renormalised), in the spirit of Olshausen & Field (1996). Unused and duplicated atoms are
    replaced by residuals of the worst-represented signals.

    X: (P, d) float64, one signal per row; n_atoms: int K; lam: float > 0; n_iter: int >= 1
    generator: torch.Generator, the only randomness (initial atoms drawn from the signals)
    returns: (d, K) float64 with unit-norm columns
    """
    P, d = X.shape
    idx = torch.randperm(P, generator=generator)[:n_atoms]
    D = X[idx].T.clone()
    D = D / D.norm(dim=0).clamp_min(1e-12)
    G = torch.zeros(P, n_atoms, dtype=X.dtype)
    for it in range(n_iter):
        L = torch.linalg.matrix_norm(D, 2) ** 2
        Y, Z, t = G, G, 1.0
        for _ in range(50):
            Zn = soft_threshold(Y - (Y @ D.T - X) @ D / L, lam / L)
            tn = (1 + math.sqrt(1 + 4 * t * t)) / 2
            Y = Zn + (t - 1) / tn * (Zn - Z)
            Z, t = Zn, tn
        G = Z
        A = G.T @ G + 1e-8 * torch.eye(n_atoms, dtype=X.dtype)
        D = torch.linalg.solve(A, G.T @ X).T
        D = D / D.norm(dim=0).clamp_min(1e-12)
        # replace unused atoms and near-duplicates by the worst-represented signals' residuals
        C = (D.T @ D).abs() - 2 * torch.eye(n_atoms, dtype=X.dtype)
        dup = (C.max(dim=0).values > 0.95) & (torch.arange(n_atoms) > C.argmax(dim=0))
        bad = dup | ((G != 0).sum(dim=0) == 0)
        if bool(bad.any()) and it < n_iter - 1:
            err = ((X - G @ D.T) ** 2).sum(dim=1)
            worst = err.argsort(descending=True)[: int(bad.sum())]
            D[:, bad] = (X[worst] - G[worst] @ D.T).T
            D[:, bad] = D[:, bad] / D[:, bad].norm(dim=0).clamp_min(1e-12)
            G[:, bad] = 0
    return D


# ---------------------------------------------------------------- exercise 2
def conv_dictionary(filters, N):
    """Global convolutional dictionary (Papyan, Sulam & Elad 2017; columns ordered filter-major):
    column j N + i holds filters[j, k, t] at row k N + (i + t) mod N.

    filters: (m, c, n) float64, n <= N; N: int
    returns: (c N, m N) float64
    """
    m, c, n = filters.shape
    D = torch.zeros(c * N, m * N, dtype=filters.dtype)
    rows_k = torch.arange(c)[:, None] * N
    for j in range(m):
        for i in range(N):
            rows = rows_k + (i + torch.arange(n))[None, :] % N
            D[rows.reshape(-1), j * N + i] += filters[j].reshape(-1)
    return D


def mutual_coherence(D):
    """Mutual coherence max_{i != j} |d_i^T d_j| / (||d_i|| ||d_j||) (Donoho & Elad 2003).

    D: (d, M) float64 with M >= 2 and no zero column
    returns: () float64
    """
    Dn = D / D.norm(dim=0)
    G = (Dn.T @ Dn).abs()
    G.fill_diagonal_(0.0)
    return G.max()


def conv_coherence(filters):
    """Mutual coherence of conv_dictionary(filters, N), the same for every N >= 2 n - 1: the largest
    normalised cross-correlation between two filters (summed over channels) over all shifts |s| < n,
    the zero shift of a filter with itself excluded.

    filters: (m, c, n) float64, no zero filter, m n >= 2
    returns: () float64
    """
    m, c, n = filters.shape
    f = filters / filters.reshape(m, -1).norm(dim=1)[:, None, None]
    # corr[a, b, s] = sum_k sum_t f[a, k, t] f[b, k, t + s - (n - 1)]
    corr = F.conv1d(F.pad(f, (n - 1, n - 1)), f)  # (m, m, 2n - 1), batch = filter a, channel = filter b
    corr = corr.abs()
    corr[torch.arange(m), torch.arange(m), n - 1] = 0.0
    return corr.max()


def stripe_norm(Gamma, n):
    """The l_{0,infinity} norm of Papyan, Sulam & Elad (2017): the largest number of nonzeros of Gamma in
    a stripe, i.e. among the coefficients of atoms (filter length n) that overlap one length-n patch
    of the periodic signal: positions i - n + 1, ..., i + n - 1 (mod N) of every filter.

    Gamma: (m, N) float64; n: int, 1 <= n and 2 n - 1 <= N
    returns: int
    """
    m, N = Gamma.shape
    counts = (Gamma != 0).sum(dim=0).to(torch.int64)  # nonzeros per position
    window = torch.cat([counts[-(n - 1):], counts, counts[: n - 1]]) if n > 1 else counts
    sums = window.unfold(0, 2 * n - 1, 1).sum(dim=1)
    return int(sums.max())


# ---------------------------------------------------------------- exercise 3
def layered_thresholding(X, dictionaries, biases):
    """Layered nonnegative soft thresholding (Papyan, Romano & Elad 2017): Gamma_0 = X and
    Gamma_i = ReLU(D_i^T Gamma_{i-1} + b_i) -- the forward pass of a CNN.

    X: (B, d_0) float64; dictionaries: list of L tensors, D_i of shape (d_{i-1}, d_i) float64
    biases: list of L tensors, b_i of shape (d_i,) float64
    returns: list of L tensors, entry i-1 of shape (B, d_i) float64 (the estimates of Gamma_1..Gamma_L)
    """
    out = []
    G = X
    for D, b in zip(dictionaries, biases):
        G = torch.relu(G @ D + b)
        out.append(G)
    return out


def threshold_interval(mu, k, gmin, gmax):
    """Thresholds beta that the worst-case analysis guarantees: if D has unit-norm atoms with coherence
    mu, Gamma >= 0 has at most k nonzeros overlapping any atom, and its nonzeros lie in [gmin, gmax],
    then ReLU(D^T D Gamma - beta) has the support of Gamma for every beta in [lo, hi), with
    lo = k mu gmax (largest off-support correlation) and hi = gmin - (k - 1) mu gmax (smallest
    on-support correlation); the interval is empty when lo >= hi.

    mu: float in [0, 1); k: int >= 1; gmin, gmax: floats, 0 < gmin <= gmax
    returns: tuple (lo, hi) of floats
    """
    return k * mu * gmax, gmin - (k - 1) * mu * gmax


def critical_contrast(D, s, generator):
    """The contrast rho at which one layer of nonnegative thresholding with the best threshold recovers
    the support of Gamma with probability 1/2, for Gamma with s nonzeros at uniformly random atoms
    (without replacement) and values i.i.d. uniform on [1, rho]. Common random numbers: one set of
    supports and uniforms u for every rho, Gamma(rho) = 1 + (rho - 1) u on the support, so D^T D Gamma
    is affine in rho; success iff min on-support correlation > max off-support correlation;
    bisection in log rho on the empirical success curve, 5000 trials.

    D: (d, M) float64 with unit-norm columns; s: int >= 1; generator: torch.Generator
    returns: float > 1
    """
    T = 5000
    M = D.shape[1]
    supports = torch.rand(T, M, generator=generator).argsort(dim=1)[:, :s]
    u = torch.rand(T, s, generator=generator, dtype=D.dtype)
    gram = D.T @ D
    mask = torch.zeros(T, M, dtype=torch.bool)
    mask.scatter_(1, supports, True)
    ones = torch.zeros(T, M, dtype=D.dtype).scatter_(1, supports, torch.ones(T, s, dtype=D.dtype))
    slope = torch.zeros(T, M, dtype=D.dtype).scatter_(1, supports, u)
    A, B = ones @ gram, slope @ gram

    def rate(rho):
        C = A + (rho - 1) * B
        on = torch.where(mask, C, torch.full_like(C, math.inf)).min(dim=1).values
        off = torch.where(mask, torch.full_like(C, -math.inf), C).max(dim=1).values
        return float((on > off).to(D.dtype).mean())

    lo, hi = 1.0, 2.0
    while rate(hi) > 0.5:
        lo, hi = hi, 2 * hi
        if hi > 1e6:
            return math.inf
    for _ in range(16):
        mid = math.sqrt(lo * hi)
        if rate(mid) > 0.5:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


# ---------------------------------------------------------------- exercise 4
def layered_basis_pursuit(X, dictionaries, lams, steps):
    """Layered basis pursuit (Papyan, Romano & Elad 2017): Gamma_0 = X and Gamma_i minimises
    1/2 ||Gamma_{i-1} - D_i Gamma||^2 + lam_i ||Gamma||_1, by ``steps`` FISTA steps from 0 (step 1/L_i).

    X: (B, d_0) float64; dictionaries: list of L tensors (d_{i-1}, d_i) float64
    lams: list of L floats > 0; steps: int >= 1
    returns: list of L tensors, entry i-1 of shape (B, d_i) float64
    """
    out = []
    Gprev = X
    for D, lam in zip(dictionaries, lams):
        L = torch.linalg.matrix_norm(D, 2) ** 2
        gram = D.T @ D
        target = Gprev @ D
        Z = torch.zeros(X.shape[0], D.shape[1], dtype=X.dtype)
        Y, t = Z, 1.0
        for _ in range(steps):
            Zn = soft_threshold(Y - (Y @ gram - target) / L, lam / L)
            tn = (1 + math.sqrt(1 + 4 * t * t)) / 2
            Y = Zn + (t - 1) / tn * (Zn - Z)
            Z, t = Zn, tn
        out.append(Z)
        Gprev = Z
    return out


def res_csc_block(D, lam):
    """Residual block of Zhang & Zhang (2021): one nonnegative ISTA step (step 1/L, L = ||D||_2^2) on
    1/2 ||y - D Gamma||^2 + lam 1^T Gamma, Gamma >= 0, started at Gamma = y (the previous layer's
    representation), equals ReLU(y + W y + b) with W = D^T (I - D) / L and b = -lam / L.

    D: (M, M) float64 (layer i and layer i-1 have the same dimension); lam: float >= 0
    returns: tuple (W (M, M) float64, b (M,) float64)
    """
    L = torch.linalg.matrix_norm(D, 2) ** 2
    M = D.shape[0]
    W = D.T @ (torch.eye(M, dtype=D.dtype) - D) / L
    b = torch.full((M,), -lam, dtype=D.dtype) / L
    return W, b


# ---------------------------------------------------------------- exercise 5
def csc_deconvolution(x, filters, lam, steps):
    """Convolutional sparse coding of an image as in Deconvolutional Networks (Zeiler et al. 2010):
    minimise 1/2 ||x - sum_k z_k * f_k||^2 + lam sum_k ||z_k||_1 over feature maps z_k of size
    (H + n - 1, W + n - 1), '*' the valid cross-correlation of torch.nn.functional.conv2d, by
    ``steps`` FISTA steps from 0 with step 1/L, L = ||A||_2^2 by power iteration.

    x: (H, W) float64; filters: (m, n, n) float64; lam: float > 0; steps: int >= 0
    returns: (m, H + n - 1, W + n - 1) float64
    """
    H, W = x.shape
    m, n, _ = filters.shape
    w = filters[None]  # (1, m, n, n)

    def A(z):
        return F.conv2d(z[None], w)[0, 0]

    def At(r):
        return F.conv_transpose2d(r[None, None], w)[0]

    v = torch.ones(m, H + n - 1, W + n - 1, dtype=x.dtype)
    for _ in range(100):
        v = At(A(v))
        v = v / v.norm()
    L = float((A(v) ** 2).sum()) * 1.01  # Rayleigh quotient of A^T A at the unit vector v, with a margin
    z = torch.zeros(m, H + n - 1, W + n - 1, dtype=x.dtype)
    y, t = z, 1.0
    Atx = At(x)
    for _ in range(steps):
        zn = soft_threshold(y - (At(A(y)) - Atx) / L, lam / L)
        tn = (1 + math.sqrt(1 + 4 * t * t)) / 2
        y = zn + (t - 1) / tn * (zn - z)
        z, t = zn, tn
    return z


def msd_dilations(depth, width):
    """Dilations of a mixed-scale dense network (Pelt & Sethian 2018): channel j of layer i
    (i = 0..depth-1, j = 0..width-1) is a 3x3 convolution with dilation ((i width + j) mod 10) + 1.

    depth: int >= 0; width: int >= 1
    returns: list of depth lists of width ints
    """
    return [[(i * width + j) % 10 + 1 for j in range(width)] for i in range(depth)]


def msd_param_count(depth, width, c_in, c_out):
    """Number of parameters of the MSD network of the notebook: each channel of layer i (0-based) is a
    3x3 convolution with bias of all c_in + i width earlier channels; a final 1x1 convolution with bias
    maps all c_in + depth width channels to c_out:
    9 width (depth c_in + width depth (depth - 1) / 2) + depth width + c_out (c_in + depth width + 1).

    depth: int >= 0; width, c_in, c_out: ints >= 1
    returns: int
    """
    convs = 9 * width * (depth * c_in + width * depth * (depth - 1) // 2) + depth * width
    return convs + c_out * (c_in + depth * width + 1)


def msd_receptive_field(depth, width):
    """Side length of the (square) receptive field of one output pixel of the MSD network: dense
    connections let the longest chain pass through every layer, each time through the channel with
    the largest dilation, so the radius is sum_i max_j s_ij.

    depth: int >= 0; width: int >= 1
    returns: int
    """
    return 1 + 2 * sum(max(row) for row in msd_dilations(depth, width))
