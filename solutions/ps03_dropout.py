"""ps03 -- Inductive Biases due to Dropout: reference implementations.

Conventions (as in the notebook): ``p`` and ``theta`` are *keep* (retain) probabilities,
as in Srivastava et al. (2014) and Cavazza et al. (2018); ``delta`` is the *drop*
probability, as in Wager et al. (2013). Every tensor argument is a ``torch.Tensor``
(float64 unless stated); masks are ``bool`` tensors with ``True`` = unit kept.
"""

from __future__ import annotations

import itertools

import torch

__all__ = [
    "dropout_forward",
    "dropout_backward",
    "dropout_linreg_objective",
    "dropout_linreg_solution",
    "logistic_dropout_excess",
    "wager_penalty",
    "fit_dropout_logistic",
    "dropout_ensemble",
    "nwgm",
    "dropout_mf_expected_loss",
    "equalize",
    "dropout_mf_closed_form",
    "train_dropout_mf",
    "dropout_net_loss",
    "explicit_regularizer",
    "train_two_layer",
]


# ---------------------------------------------------------------- exercise 1
def dropout_forward(x, p, mask):
    """Inverted dropout at training time (Srivastava et al. 2014, Sec. 4, eq. of r ~ Bernoulli(p),
    with the 1/p test-time weight scaling moved to training time).

    x:    (N, D) float32 or float64
    p:    float in (0, 1], keep probability
    mask: (N, D) bool, True = unit kept
    returns: (N, D) same dtype as x, x * mask / p
    """
    return x * mask.to(x.dtype) / p


def dropout_backward(dout, p, mask):
    """Gradient of the loss w.r.t. the input of ``dropout_forward``.

    dout: (N, D) float32 or float64, upstream gradient dL/d(out)
    p:    float in (0, 1], keep probability
    mask: (N, D) bool, the mask used in the forward pass
    returns: (N, D) same dtype as dout, dL/dx
    """
    return dout * mask.to(dout.dtype) / p


# ---------------------------------------------------------------- exercise 2
def dropout_linreg_objective(X, y, w, p):
    """Expected dropout loss of linear regression E_R ||y - (R * X) w||^2, R_nd ~ Bernoulli(p) iid
    (Srivastava et al. 2014, Sec. 9.1): ||y - p X w||^2 + p (1 - p) w^T diag(X^T X) w.

    X: (N, D) float64; y: (N,) float64; w: (D,) float64; p: float in (0, 1], keep probability
    returns: () float64
    """
    gamma = (X * X).sum(dim=0)
    r = y - p * (X @ w)
    return r @ r + p * (1 - p) * (gamma * w * w).sum()


def dropout_linreg_solution(X, y, p):
    """Minimiser of ``dropout_linreg_objective`` (Srivastava et al. 2014, Sec. 9.1): solves
    (p X^T X + (1 - p) diag(X^T X)) w = X^T y, i.e. p w is ridge regression with penalty
    ((1 - p)/p) w^T diag(X^T X) w.

    X: (N, D) float64 with no zero column; y: (N,) float64; p: float in (0, 1]
    returns: (D,) float64
    """
    G = X.T @ X
    A = p * G + (1 - p) * torch.diag(torch.diagonal(G))
    return torch.linalg.solve(A, X.T @ y)


# ---------------------------------------------------------------- exercise 3
def logistic_dropout_excess(X, beta, delta):
    """Exact dropout penalty of logistic regression (Wager, Wang & Liang 2013, Sec. 2, eq. of R(beta)):
    R(beta) = sum_i E_z[A(x~_i . beta)] - A(x_i . beta), A(s) = log(1 + e^s),
    x~_ij = x_ij z_ij / (1 - delta), z_ij ~ Bernoulli(1 - delta), by enumerating all 2^D masks.

    X: (N, D) float64, D <= 12; beta: (D,) float64; delta: float in [0, 1), drop probability
    returns: () float64
    """
    D = X.shape[1]
    Z = torch.tensor(list(itertools.product([0.0, 1.0], repeat=D)), dtype=X.dtype)
    k = Z.sum(dim=1)
    probs = (1 - delta) ** k * delta ** (D - k)
    S = (X @ (Z * beta).T) / (1 - delta)
    expected = (torch.nn.functional.softplus(S) * probs).sum(dim=1)
    return (expected - torch.nn.functional.softplus(X @ beta)).sum()


def wager_penalty(X, beta, delta):
    """Quadratic approximation of the dropout penalty for logistic regression
    (Wager, Wang & Liang 2013, Sec. 2): R^q(beta) = 1/2 * delta/(1 - delta)
    * sum_i pi_i (1 - pi_i) sum_j x_ij^2 beta_j^2, pi_i = sigmoid(x_i . beta).

    X: (N, D) float64; beta: (D,) float64; delta: float in [0, 1), drop probability
    returns: () float64
    """
    pi = torch.sigmoid(X @ beta)
    return 0.5 * delta / (1 - delta) * ((pi * (1 - pi)) @ ((X * X) @ (beta * beta)))


def fit_dropout_logistic(X, y, delta, masks, lam):
    """Dropout training of logistic regression on M noised copies of the data (Wager, Wang & Liang
    2013, Sec. 2: dropout as feature noising): the minimiser over beta of
    (1/M) sum_m sum_i [A(x~_i^(m) . beta) - y_i x~_i^(m) . beta] + (lam/2) ||beta||^2,
    x~_ij^(m) = x_ij z_ij^(m) / (1 - delta), z^(m) = masks[m], A(s) = log(1 + e^s). The objective is
    convex (strictly for lam > 0); solved by L-BFGS to a gradient below 1e-8 in every coordinate.

    X: (N, D) float64; y: (N,) float64 in {0, 1}; delta: float in [0, 1), drop probability
    masks: (M, N, D) bool, True = feature kept; lam: float >= 0
    returns: (D,) float64
    """
    from scipy.optimize import minimize

    M, N, D = masks.shape
    Xt = (masks.to(X.dtype) * X / (1 - delta)).reshape(M * N, D)
    yt = y.repeat(M)

    def fun(b):
        b = torch.as_tensor(b, dtype=X.dtype)
        s = Xt @ b
        obj = (torch.nn.functional.softplus(s) - yt * s).sum() / M + 0.5 * lam * (b @ b)
        grad = Xt.T @ (torch.sigmoid(s) - yt) / M + lam * b
        return float(obj), grad.numpy()

    res = minimize(fun, torch.zeros(D, dtype=X.dtype).numpy(), jac=True, method="L-BFGS-B",
                   options={"maxiter": 10000, "gtol": 1e-10, "ftol": 1e-15})
    return torch.as_tensor(res.x, dtype=X.dtype)


# ---------------------------------------------------------------- exercise 4
def dropout_ensemble(w, x, p):
    """All 2^n dropout sub-networks of one unit S = sum_i w_i d_i x_i, d_i ~ Bernoulli(p)
    (Baldi & Sadowski 2013, Sec. 3), in any order of the masks.

    w: (n,) float64; x: (n,) float64; p: float in (0, 1], keep probability
    returns: S (2^n,) float64, probs (2^n,) float64 -- the pre-activation of each
             sub-network and its probability (probs sum to 1)
    """
    n = w.shape[0]
    Z = torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=w.dtype)
    k = Z.sum(dim=1)
    probs = p**k * (1 - p) ** (n - k)
    return Z @ (w * x), probs


def nwgm(outputs, probs):
    """Normalized weighted geometric mean of outputs in (0, 1) (Baldi & Sadowski 2013, Sec. 3):
    G / (G + G'), G = prod_m O_m^{P_m}, G' = prod_m (1 - O_m)^{P_m}.

    outputs: (M,) float64 in (0, 1); probs: (M,) float64, nonnegative, summing to 1
    returns: () float64
    """
    log_g = (probs * torch.log(outputs)).sum()
    log_h = (probs * torch.log1p(-outputs)).sum()
    return torch.sigmoid(log_g - log_h)


# ---------------------------------------------------------------- exercise 5
def dropout_mf_expected_loss(Y, U, V, theta):
    """Expected dropout loss of matrix factorization E_b ||Y - U diag(b) V^T / theta||_F^2,
    b_i ~ Bernoulli(theta) (Cavazza et al. 2018, Sec. 3; Mianjy et al. 2018, Sec. 2):
    ||Y - U V^T||_F^2 + ((1 - theta)/theta) sum_i ||u_i||^2 ||v_i||^2.

    Y: (n, m) float64; U: (n, r) float64; V: (m, r) float64; theta: float in (0, 1], keep prob.
    returns: () float64
    """
    R = Y - U @ V.T
    reg = ((U * U).sum(dim=0) * (V * V).sum(dim=0)).sum()
    return (R * R).sum() + (1 - theta) / theta * reg


def equalize(U, V):
    """Equalized factorization (Mianjy, Arora & Vidal 2018, Sec. 2, Theorem on equalized factors):
    U' V'^T = U V^T and ||u'_i|| ||v'_i|| = ||U V^T||_* / r for every column i, so that
    sum_i ||u'_i||^2 ||v'_i||^2 = ||U V^T||_*^2 / r. Balanced SVD factors, then r - 1 Givens
    rotations that set one diagonal entry of the Gram matrix to the mean at a time.

    U: (n, r) float64; V: (m, r) float64
    returns: U' (n, r) float64, V' (m, r) float64
    """
    n, r = U.shape
    m = V.shape[0]
    A, s, Bt = torch.linalg.svd(U @ V.T, full_matrices=False)
    k = min(r, s.shape[0])
    Ub = torch.zeros(n, r, dtype=U.dtype)
    Vb = torch.zeros(m, r, dtype=U.dtype)
    Ub[:, :k] = A[:, :k] * s[:k].sqrt()
    Vb[:, :k] = Bt[:k].T * s[:k].sqrt()
    d = torch.zeros(r, dtype=U.dtype)
    d[:k] = s[:k]
    target = d.sum() / r
    Q = torch.eye(r, dtype=U.dtype)
    free = list(range(r))
    for _ in range(r - 1):
        K = Q.T @ (d[:, None] * Q)
        diag = torch.diagonal(K)
        i = max(free, key=lambda a: float(diag[a]))
        j = min(free, key=lambda a: float(diag[a]))
        a, b, g = K[i, i], K[j, j], K[i, j]
        half = (a - b) / 2
        rad = torch.hypot(half, g)
        if float(rad) <= 1e-300:
            break
        cos_arg = torch.clamp((target - (a + b) / 2) / rad, -1.0, 1.0)
        phi = (torch.atan2(g, half) + torch.arccos(cos_arg)) / 2
        c, sn = torch.cos(phi), torch.sin(phi)
        qi, qj = Q[:, i].clone(), Q[:, j].clone()
        Q[:, i] = c * qi + sn * qj
        Q[:, j] = -sn * qi + c * qj
        free.remove(i)
    return Ub @ Q, Vb @ Q


def dropout_mf_closed_form(Y, lam, r):
    """Global minimiser M = U V^T of ||Y - U V^T||_F^2 + lam sum_i ||u_i||^2 ||v_i||^2 over
    U (n, r), V (m, r) (Mianjy, Arora & Vidal 2018, Sec. 3, closed form of the global optimum):
    keep the top rho singular values of Y and shrink them by tau = lam * sum_{i<=rho} s_i / (r + lam rho),
    rho = max{j <= r : s_j > lam * sum_{i<=j} s_i / (r + lam j)}. Equivalently M minimises
    ||Y - M||_F^2 + (lam / r) ||M||_*^2 over rank(M) <= r.

    Y: (n, m) float64; lam: float >= 0 (= (1 - theta)/theta for dropout); r: int >= 1
    returns: (n, m) float64
    """
    A, s, Bt = torch.linalg.svd(Y, full_matrices=False)
    rho = 0
    for j in range(1, min(r, s.shape[0]) + 1):
        if s[j - 1] > lam * s[:j].sum() / (r + lam * j):
            rho = j
    tau = lam * s[:rho].sum() / (r + lam * rho)
    return (A[:, :rho] * (s[:rho] - tau)) @ Bt[:rho]


def train_dropout_mf(Y, U0, V0, theta, lrs, masks):
    """Dropout training of matrix factorization (Cavazza et al. 2018; Mianjy et al. 2018): step t
    draws the column mask b_t and takes one simultaneous gradient step (as torch.optim.SGD) on
    L_t(U, V) = ||Y - U diag(b_t) V^T / theta||_F^2 with step size lrs[t].

    Y: (n, m) float64; U0: (n, r) float64; V0: (m, r) float64; theta: float in (0, 1], keep prob.
    lrs: (T,) float64 step sizes; masks: (T, r) bool, True = column kept
    returns: U (n, r) float64, V (m, r) float64, products (T + 1, r) float64 with
             products[t, i] = ||u_i|| ||v_i|| before step t (row T: after the last step)
    """
    U, V = U0.clone(), V0.clone()
    products = [U.norm(dim=0) * V.norm(dim=0)]
    for t in range(lrs.shape[0]):
        dm = masks[t].to(Y.dtype) / theta
        R = Y - (U * dm) @ V.T
        gU = -2 * R @ (V * dm)
        gV = -2 * R.T @ (U * dm)
        U, V = U - lrs[t] * gU, V - lrs[t] * gV
        products.append(U.norm(dim=0) * V.norm(dim=0))
    return U, V, torch.stack(products)


# ---------------------------------------------------------------- exercise 6
def dropout_net_loss(U, W, X, Y, p, mask, activation):
    """Dropout loss of a two-layer network f(x) = U (b * act(W x)) / p, dropout on the hidden
    layer (Arora, Bartlett, Mianjy & Srebro 2021, Sec. 2): mean_n ||y_n - f(x_n; b_n)||^2.

    U: (K, H) float64; W: (H, D) float64; X: (N, D) float64; Y: (N, K) float64
    p: float in (0, 1], keep probability; mask: (N, H) bool, row n is b_n
    activation: callable, elementwise on a tensor (e.g. torch.relu)
    returns: () float64
    """
    Hid = activation(X @ W.T) * mask.to(X.dtype) / p
    R = Y - Hid @ U.T
    return (R * R).sum(dim=1).mean()


def explicit_regularizer(U, W, X, p, activation):
    """Explicit regularizer of dropout in a two-layer network (Arora, Bartlett, Mianjy & Srebro 2021,
    Sec. 3): E_b[loss] - plain loss = ((1 - p)/p) sum_j ||u_j||^2 mean_n act(w_j . x_n)^2,
    u_j the j-th column of U, w_j the j-th row of W (their lambda = (1 - p)/p for keep prob. p).

    U: (K, H) float64; W: (H, D) float64; X: (N, D) float64; p: float in (0, 1], keep prob.
    activation: callable, elementwise on a tensor
    returns: () float64
    """
    Hid = activation(X @ W.T)
    return (1 - p) / p * ((U * U).sum(dim=0) * (Hid * Hid).mean(dim=0)).sum()


# ---------------------------------------------------------------- exercise 7
def train_two_layer(U0, W0, X, Y, p, lrs, masks, activation, mode):
    """Full-batch gradient descent on a two-layer network f(x) = U act(W x) with one of three
    objectives (Arora, Bartlett, Mianjy & Srebro 2021: does the explicit regularizer alone
    reproduce dropout?). Step t: (U, W) <- (U, W) - lrs[t] * grad L_t(U, W), both gradients at the
    current point, with
      mode "plain":    L_t = mean_n ||y_n - U act(W x_n)||^2
      mode "dropout":  L_t = dropout_net_loss(U, W, X, Y, p, masks[t], activation)
      mode "explicit": L_t = plain loss + explicit_regularizer(U, W, X, p, activation).

    U0: (K, H) float64; W0: (H, D) float64; X: (N, D) float64; Y: (N, K) float64
    p: float in (0, 1], keep probability; lrs: (T,) float64 step sizes
    masks: (T, N, H) bool (used by mode "dropout" only; may be None otherwise)
    activation: callable, elementwise; mode: "plain", "dropout" or "explicit"
    returns: U (K, H), W (H, D), float64 (float32 also accepted), after T steps
    """
    if mode not in ("plain", "dropout", "explicit"):
        raise ValueError(f"unknown mode {mode!r}")
    U, W = U0.clone(), W0.clone()
    for t in range(lrs.shape[0]):
        U.requires_grad_(True)
        W.requires_grad_(True)
        Hid = activation(X @ W.T)
        if mode == "dropout":
            R = Y - (Hid * masks[t].to(X.dtype) / p) @ U.T
        else:
            R = Y - Hid @ U.T
        loss = (R * R).sum(dim=1).mean()
        if mode == "explicit":
            loss = loss + (1 - p) / p * ((U * U).sum(dim=0) * (Hid * Hid).mean(dim=0)).sum()
        gU, gW = torch.autograd.grad(loss, (U, W))
        U, W = (U - lrs[t] * gU).detach(), (W - lrs[t] * gW).detach()
    return U, W
