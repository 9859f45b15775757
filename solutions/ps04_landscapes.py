"""ps04 -- Tractable Landscapes for Nonconvex Optimization: reference implementations.

Every tensor argument is a ``torch.Tensor`` (float64 unless stated). Randomness comes in as an
argument (an initial point, a noise tensor or a ``torch.Generator``), so that every correct
implementation produces the same numbers.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "gram_h_infinity",
    "gram_h",
    "train_two_layer",
    "movement_vs_width",
    "tensor_objective",
    "tensor_objective_grad",
    "projected_noisy_gd",
    "mc_objective_grad",
    "mc_gd",
    "relu_hermite",
    "relu_kernel",
    "population_loss",
    "markov_parameters",
    "h2_distance_sq",
    "fit_lds_gd",
    "leaky_net",
    "spurious_minimum",
]


# ---------------------------------------------------------------- exercise 1: Du et al. (2018)
def gram_h_infinity(X):
    """Limiting Gram matrix H^inf of a two-layer ReLU network (Du, Zhai, Poczos & Singh 2018):
    H^inf_ij = E_{w ~ N(0, I)}[x_i^T x_j 1{w^T x_i >= 0, w^T x_j >= 0}].

    X: (n, d) float64, rows of unit norm (up to rounding)
    returns: (n, n) float64
    """
    G = X @ X.T
    C = G.clamp(-1.0, 1.0)
    return G * (math.pi - torch.arccos(C)) / (2 * math.pi)


def gram_h(X, W):
    """Gram matrix H(W) of the network's output gradients at first-layer weights W
    (Du et al. 2018, output weights a_r in {-1, +1}).

    X: (n, d) float64; W: (m, d) float64, one row per hidden unit
    returns: (n, n) float64
    """
    S = (X @ W.T >= 0).to(X.dtype)
    return (X @ X.T) * (S @ S.T) / W.shape[0]


def train_two_layer(X, y, W0, a, lr, steps):
    """Full-batch gradient descent on the first layer of f(x) = m^{-1/2} sum_r a_r relu(w_r^T x),
    output weights a fixed, loss L(W) = 1/2 sum_i (f(x_i) - y_i)^2 (Du et al. 2018).

    X: (n, d) float64; y: (n,) float64; W0: (m, d) float64; a: (m,) float64 in {-1, +1}
    lr: float; steps: int >= 0
    returns: losses (steps + 1,) float64 with losses[k] = L(W(k)); W (m, d) float64, W(steps)
    """
    m = W0.shape[0]
    W = W0.clone()
    losses = []
    for _ in range(steps + 1):
        Z = X @ W.T
        u = torch.relu(Z) @ a / math.sqrt(m)
        r = u - y
        losses.append(0.5 * (r @ r))
        if len(losses) == steps + 1:
            break
        G = ((Z >= 0).to(X.dtype) * r[:, None]).T @ X * a[:, None] / math.sqrt(m)
        W = W - lr * G
    return torch.stack(losses), W


def movement_vs_width(X, y, widths, lr, steps, generator):
    """How far the hidden units travel during training, as a power of the width (Du et al.
    2018). For each width m, W0 has i.i.d. N(0, 1) entries and a has i.i.d. uniform signs, both
    drawn from ``generator``; the network is trained with ``train_two_layer(X, y, W0, a, lr, steps)``.

    X: (n, d) float64; y: (n,) float64; widths: list of int, increasing; lr: float; steps: int
    generator: torch.Generator
    returns: movements (len(widths),) float64, your measured distance travelled by the hidden
             units at each width; slope float, the exponent p of movement ~ width^p fitted to them
    """
    mov = []
    for m in widths:
        W0 = torch.randn(m, X.shape[1], generator=generator, dtype=X.dtype)
        a = torch.randint(0, 2, (m,), generator=generator).to(X.dtype) * 2 - 1
        _, W = train_two_layer(X, y, W0, a, lr, steps)
        mov.append((W - W0).norm(dim=1).max())
    mov = torch.stack(mov)
    lx = torch.log(torch.tensor(widths, dtype=X.dtype))
    ly = torch.log(mov)
    lx0, ly0 = lx - lx.mean(), ly - ly.mean()
    return mov, float((lx0 @ ly0) / (lx0 @ lx0))


# ---------------------------------------------------------------- exercise 2: Ge et al. (2015)
def tensor_objective(T, U):
    """Objective of Ge, Huang, Jin & Yuan (2015) for orthogonal tensor decomposition:
    sum over ordered pairs i != j of T(u_i, u_i, u_j, u_j).

    T: (d, d, d, d) float64, symmetric; U: (k, d) float64, row i is u_i
    returns: () float64
    """
    P = torch.einsum("abce,ia,ib,jc,je->ij", T, U, U, U, U)
    return P.sum() - torch.diagonal(P).sum()


def tensor_objective_grad(T, U):
    """Euclidean gradient of ``tensor_objective`` with respect to U, for a symmetric T.

    T: (d, d, d, d) float64, symmetric; U: (k, d) float64
    returns: (k, d) float64
    """
    V = torch.einsum("abce,ib,jc,je->ija", T, U, U, U)  # V[i, j] = T(., u_i, u_j, u_j)
    k = U.shape[0]
    off = 1.0 - torch.eye(k, dtype=U.dtype)
    return 4 * (off[:, :, None] * V).sum(dim=1)


def projected_noisy_gd(T, U0, lr, steps, noise):
    """Projected noisy gradient descent (Ge et al. 2015) on ``tensor_objective``:
    a step along minus (gradient + noise[t]), then every row rescaled to unit norm.

    T: (d, d, d, d) float64, symmetric; U0: (k, d) float64 with unit rows; lr: float
    steps: int >= 0; noise: (steps, k, d) float64
    returns: U (k, d) float64 after ``steps`` steps; objective values (steps + 1,) float64
    """
    U = U0.clone()
    vals = [tensor_objective(T, U)]
    for t in range(steps):
        U = U - lr * (tensor_objective_grad(T, U) + noise[t])
        U = U / U.norm(dim=1, keepdim=True)
        vals.append(tensor_objective(T, U))
    return U, torch.stack(vals)


# ---------------------------------------------------------------- exercise 3: Ge, Lee & Ma (2016)
def mc_objective_grad(X, mask, M_obs, lam, alpha):
    """Objective of positive semidefinite matrix completion with the incoherence regularizer of
    Ge, Lee & Ma (2016, without the 1/p normalisation):
    f(X) = 1/2 sum_{(i,j) in Omega} (M_ij - (X X^T)_ij)^2 + lam sum_i (||X_i||_2 - alpha)_+^4,
    and its gradient.

    X: (d, r) float64; mask: (d, d) bool, symmetric, True = observed; M_obs: (d, d) float64,
    symmetric, entries outside the mask are arbitrary; lam, alpha: float >= 0
    returns: f () float64; grad (d, r) float64
    """
    R = torch.where(mask, X @ X.T - M_obs, torch.zeros((), dtype=X.dtype))
    nrm = X.norm(dim=1)
    exc = (nrm - alpha).clamp(min=0.0)
    f = 0.5 * (R * R).sum() + lam * (exc**4).sum()
    scale = torch.where(nrm > 0, 4 * lam * exc**3 / torch.where(nrm > 0, nrm, 1.0), 0.0)
    return f, (R + R.T) @ X + scale[:, None] * X


def mc_gd(mask, M_obs, X0, lr, steps, lam, alpha):
    """Gradient descent on ``mc_objective_grad`` from X0 (Ge, Lee & Ma 2016: with enough
    random observations every local minimum is global, so GD from any start recovers M).

    mask: (d, d) bool, symmetric; M_obs: (d, d) float64; X0: (d, r) float64; lr: float
    steps: int >= 0; lam, alpha: float >= 0
    returns: (d, r) float64, X after ``steps`` steps
    """
    X = X0.clone()
    for _ in range(steps):
        X = X - lr * mc_objective_grad(X, mask, M_obs, lam, alpha)[1]
    return X


# ---------------------------------------------------------------- exercise 4: Ge, Lee & Ma (2017)
def relu_hermite(k):
    """k-th coefficient of relu in the orthonormal Hermite basis h_k = He_k / sqrt(k!) of
    L2(N(0, 1)), He_k the probabilists' Hermite polynomials (Ge, Lee & Ma 2017):
    E_{z ~ N(0,1)}[relu(z) h_k(z)]

    k: int, 0 <= k <= 60
    returns: float
    """
    if k == 0:
        return 1.0 / math.sqrt(2 * math.pi)
    if k == 1:
        return 0.5
    if k % 2 == 1:
        return 0.0
    # even k >= 2: c_2 = 1/sqrt(4 pi), c_{j+2} / c_j = -(j - 1) / sqrt((j + 1)(j + 2))
    val = 1.0 / math.sqrt(4 * math.pi)
    for j in range(2, k, 2):
        val *= -(j - 1) / math.sqrt((j + 1) * (j + 2))
    return val


def relu_kernel(rho):
    """E[relu(u^T x) relu(v^T x)] for x ~ N(0, I) and unit vectors u, v with u^T v = rho.

    rho: (N,) float64 in [-1, 1] (up to rounding)
    returns: (N,) float64
    """
    c = rho.clamp(-1.0, 1.0)
    return (torch.sqrt(1 - c * c) + (math.pi - torch.arccos(c)) * c) / (2 * math.pi)


def population_loss(a, B, a_star, B_star):
    """Population square loss E_{x ~ N(0, I)} (a^T relu(B x) - a*^T relu(B* x))^2 of a one-hidden-layer
    network against a teacher (Ge, Lee & Ma 2017), rows of B and B* of unit norm.

    a: (m,) float64; B: (m, d) float64; a_star: (k,) float64; B_star: (k, d) float64
    returns: () float64
    """
    def K(P, Q):
        return relu_kernel((P @ Q.T).reshape(-1)).reshape(P.shape[0], Q.shape[0])

    return a @ K(B, B) @ a - 2 * a @ K(B, B_star) @ a_star + a_star @ K(B_star, B_star) @ a_star


# ---------------------------------------------------------------- exercise 5: Hardt, Ma & Recht (2018)
def markov_parameters(a, c, d, n):
    """First n impulse-response coefficients (D, CB, CAB, CA^2B, ...) of the SISO system
    h_{t+1} = A h_t + B x_t, y_t = C h_t + D x_t in controllable canonical form
    (Hardt, Ma & Recht 2018): A has ones on its superdiagonal and last row
    (-a_l, ..., -a_1), B = e_l, C = c.

    a: (l,) float64, a[0] = a_1; c: (l,) float64; d: float; n: int >= 1
    returns: (n,) float64
    """
    ell = a.shape[0]
    out = [torch.as_tensor(d, dtype=a.dtype).reshape(())]
    s = torch.zeros(ell, dtype=a.dtype)
    s[-1] = 1.0  # A^k B, starting with B = e_l
    for _ in range(n - 1):
        out.append(c @ s)
        s = torch.cat([s[1:], -(torch.flip(a, [0]) @ s).reshape(1)])
    return torch.stack(out)


def h2_distance_sq(a_hat, c_hat, d_hat, a, c, d):
    """Idealized risk of Hardt, Ma & Recht (2018): the squared H2 distance between the
    transfer functions of two systems in controllable canonical form (roots of
    z^l + a_1 z^{l-1} + ... + a_l inside the unit disc for both).

    a_hat, c_hat: (l,) float64; d_hat: float; a, c: (l,) float64; d: float
    returns: () float64
    """
    N = 512
    z = torch.exp(2j * math.pi * torch.arange(N, dtype=torch.float64) / N)

    def G(aa, cc, dd):
        ell = aa.shape[0]
        pw = z[:, None] ** torch.arange(ell, dtype=torch.float64)  # z^0 .. z^{l-1}
        num = pw.to(torch.complex128) @ cc.to(torch.complex128)
        den = z**ell + pw.to(torch.complex128) @ torch.flip(aa, [0]).to(torch.complex128)
        return num / den + dd

    diff = G(a_hat, c_hat, d_hat) - G(a, c, d)
    return (diff.abs() ** 2).mean()


def fit_lds_gd(a_true, c_true, d_true, lr, steps):
    """Gradient descent on the idealized risk (``h2_distance_sq`` against the true system) over the
    canonical-form parameters (a, c, d), started at a = c = 0, d = 0 (Hardt, Ma & Recht 2018,
    without their projection step).

    a_true, c_true: (l,) float64; d_true: float; lr: float; steps: int >= 0
    returns: a (l,) float64, c (l,) float64, d () float64, risks (steps + 1,) float64
    """
    ell = a_true.shape[0]
    p = torch.zeros(2 * ell + 1, dtype=torch.float64, requires_grad=True)
    risks = []
    for t in range(steps + 1):
        r = h2_distance_sq(p[:ell], p[ell:2 * ell], p[2 * ell], a_true, c_true, d_true)
        risks.append(r.detach())
        if t == steps:
            break
        (g,) = torch.autograd.grad(r, p)
        with torch.no_grad():
            p -= lr * g
    p = p.detach()
    return p[:ell], p[ell:2 * ell], p[2 * ell], torch.stack(risks)


# ---------------------------------------------------------------- exercise 6: He, Wang & Tao (2019)
def leaky_net(W, b, v, c, X, slope):
    """One-hidden-layer leaky-ReLU network f(x) = sum_j v_j sigma(w_j^T x + b_j) + c with
    sigma(z) = max(z, slope * z) (He, Wang & Tao 2019).

    W: (h, d) float64; b: (h,) float64; v: (h,) float64; c: () float64; X: (n, d) float64
    slope: float in [0, 1)
    returns: (n,) float64
    """
    Z = X @ W.T + b
    return torch.where(Z > 0, Z, slope * Z) @ v + c


def spurious_minimum(X, y, h, slope):
    """A local minimum of the square loss sum_i (f(x_i) - y_i)^2 of ``leaky_net`` with h hidden units
    at which every unit is in its linear (positive) regime on every data point and the network
    equals the least-squares affine fit (He, Wang & Tao 2019).

    X: (n, d) float64; y: (n,) float64; h: int >= 1; slope: float in [0, 1)
    returns: W (h, d), b (h,), v (h,), c () float64
    """
    n, d = X.shape
    A = torch.cat([X, torch.ones(n, 1, dtype=X.dtype)], dim=1)
    sol = torch.linalg.lstsq(A, y[:, None], driver="gelsd").solution[:, 0]
    theta, beta = sol[:d], sol[d]
    shift = (X @ theta).abs().max() + beta.abs() + 1.0
    W = theta.repeat(h, 1)
    b = torch.full((h,), float(beta + shift), dtype=X.dtype)
    v = torch.full((h,), 1.0 / h, dtype=X.dtype)
    c = -shift
    return W, b, v, c.reshape(())
