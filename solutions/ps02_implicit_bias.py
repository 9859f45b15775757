"""ps02 -- Algorithmic regularization: the implicit bias of gradient methods.

Reference implementations of the functions students write in `source/ps02/ps02.ipynb`.
Shapes: N examples, D features, M measurements, n matrix size, depth = number of factors.
Everything is numpy float64.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np


def gd_logistic(X, y, lr, steps):
    """Gradient descent on the mean logistic loss from w(0) = 0 (Soudry et al. 2018, Sec. 2 and Thm. 3).

    L(w) = (1/N) sum_i log(1 + exp(-y_i x_i^T w)),   w(t+1) = w(t) - lr * grad L(w(t)).

    X: (N, D) float64
    y: (N,) float64, labels in {-1, +1}
    lr: float, steps: int
    returns: (steps + 1, D) float64, row t is w(t) (row 0 is zero)
    """
    N, D = X.shape
    Z = y[:, None] * X
    traj = np.zeros((steps + 1, D))
    w = np.zeros(D)
    for t in range(steps):
        s = 0.5 * (1.0 - np.tanh(0.5 * (Z @ w)))  # sigmoid(-margin), overflow-free
        w = w + lr * (Z.T @ s) / N
        traj[t + 1] = w
    return traj


def max_margin_direction(X, y):
    """Hard-margin SVM without bias: the limit direction w_hat of Soudry et al. (2018), Thm. 3.

    w_hat = argmin ||w||^2  subject to  y_i x_i^T w >= 1 for all i.

    X: (N, D) float64, linearly separable through the origin
    y: (N,) float64, labels in {-1, +1}
    returns: (D,) float64, w_hat (not normalised: the smallest margin is 1)
    """
    w = cp.Variable(X.shape[1])
    cp.Problem(cp.Minimize(cp.sum_squares(w)), [cp.multiply(y, X @ w) >= 1]).solve(solver=cp.CLARABEL)
    return np.asarray(w.value, dtype=np.float64)


def weighted_gd(X, y, weights, loss, lr, steps, alpha=1.0):
    """Importance-weighted gradient descent from w(0) = 0 (Byrd & Lipton 2019; Xu, Ye & Ruan 2021; Wang et al. 2022).

    L(w) = (1/N) sum_i c_i l(y_i x_i^T w) with
      loss == "logistic": l(u) = log(1 + exp(-u))
      loss == "poly":     l(u) = exp(-alpha * asinh(u)) = (u + sqrt(1 + u^2))^(-alpha)  (polynomial tail)

    X: (N, D) float64;  y: (N,) float64 in {-1, +1};  weights: (N,) float64, c_i > 0
    loss: str;  lr: float;  steps: int;  alpha: float >= 1
    returns: (steps + 1, D) float64, row t is w(t)
    """
    N, D = X.shape
    Z = y[:, None] * X
    traj = np.zeros((steps + 1, D))
    w = np.zeros(D)
    for t in range(steps):
        u = Z @ w
        if loss == "logistic":
            dl = -0.5 * (1.0 - np.tanh(0.5 * u))
        elif loss == "poly":
            dl = -alpha * np.exp(-alpha * np.arcsinh(u)) / np.sqrt(1.0 + u * u)
        else:
            raise ValueError(f"unknown loss {loss!r}")
        w = w - lr * (Z.T @ (weights * dl)) / N
        traj[t + 1] = w
    return traj


def gd_factorized_sensing(A, y, init_scale, lr, steps):
    """Gradient descent on X = U U^T for matrix sensing from U(0) = init_scale * I
    (Gunasekar et al. 2018: factorized GD; for commuting A_m its alpha -> 0 limit has minimum nuclear norm, Thm. 1).

    L(U) = 1/(2M) sum_m (<A_m, U U^T> - y_m)^2,   U(t+1) = U(t) - lr * grad L(U(t)).

    A: (M, n, n) float64, symmetric measurement matrices
    y: (M,) float64
    init_scale: float, lr: float, steps: int
    returns: (n, n) float64, X = U U^T after `steps` steps
    """
    M, n, _ = A.shape
    S = A + A.transpose(0, 2, 1)
    U = init_scale * np.eye(n)
    for _ in range(steps):
        r = np.einsum("mij,ij->m", A, U @ U.T) - y
        U = U - lr * (np.einsum("m,mij->ij", r, S) @ U) / M
    return U @ U.T


def mirror_descent(X, y, w0, potential, lr, steps):
    """Mirror descent on under-determined least squares (Gunasekar, Lee, Soudry & Srebro 2018, Sec. 2).

    L(w) = 1/(2N) ||X w - y||^2,   grad psi(w(t+1)) = grad psi(w(t)) - lr * grad L(w(t)) with
      potential == "euclidean": psi(w) = ||w||^2 / 2          (gradient descent)
      potential == "entropy":   psi(w) = sum_j w_j log w_j - w_j (exponentiated gradient, w0 > 0)

    X: (N, D) float64, N < D;  y: (N,) float64;  w0: (D,) float64
    potential: str;  lr: float;  steps: int
    returns: (D,) float64, w(steps)
    """
    N = X.shape[0]
    w = np.array(w0, dtype=np.float64)
    for _ in range(steps):
        g = X.T @ (X @ w - y) / N
        if potential == "euclidean":
            w = w - lr * g
        elif potential == "entropy":
            w = w * np.exp(-lr * g)
        else:
            raise ValueError(f"unknown potential {potential!r}")
    return w


def effective_rank(s):
    """Effective rank of Roy & Vetterli (2007), used by Arora et al. (2019, Sec. 2).

    erank = exp(H(p)) with p = s / ||s||_1 and H the Shannon entropy (0 log 0 = 0).

    s: (n,) float64, singular values (>= 0, not all zero)
    returns: float
    """
    p = s / np.sum(s)
    p = p[p > 0]
    return float(np.exp(-np.sum(p * np.log(p))))


def deep_mf(mask, observed, depth, init_scale, lr, steps):
    """Deep matrix factorization W = W_depth ... W_1 for matrix completion (Arora, Cohen, Hu & Luo 2019, Sec. 2).

    l(W) = 1/2 sum_ij mask_ij (W_ij - observed_ij)^2; every factor starts at init_scale * I (balanced)
    and takes the step W_j <- W_j - lr * dl/dW_j.

    mask: (n, n) float64 in {0, 1};  observed: (n, n) float64 (only entries with mask 1 are used)
    depth: int >= 1;  init_scale: float;  lr: float;  steps: int
    returns: (W, svals) -- W: (n, n) float64 the product after `steps` steps;
             svals: (steps + 1, n) float64, singular values of the product at each step, descending
    """
    n = mask.shape[0]
    Ws = [init_scale * np.eye(n) for _ in range(depth)]
    svals = np.zeros((steps + 1, n))

    def product(factors):
        P = np.eye(n)
        for F in factors:
            P = F @ P
        return P

    W = product(Ws)
    svals[0] = np.linalg.svd(W, compute_uv=False)
    for t in range(steps):
        G = mask * (W - observed)
        grads = []
        for j in range(depth):
            left = product(Ws[j + 1 :])  # W_depth ... W_{j+1}
            right = product(Ws[:j])  # W_{j-1} ... W_1
            grads.append(left.T @ G @ right.T)
        Ws = [F - lr * g for F, g in zip(Ws, grads)]
        W = product(Ws)
        svals[t + 1] = np.linalg.svd(W, compute_uv=False)
    return W, svals


def singular_value_rate(W, grad, depth):
    """End-to-end singular value dynamics (Arora, Cohen, Hu & Luo 2019, Theorem 3).

    d sigma_r / dt = -depth * (sigma_r^2)^(1 - 1/depth) * u_r^T grad v_r, for W = U diag(sigma) V^T.

    W: (n, n) float64, the product matrix;  grad: (n, n) float64, dl/dW at W;  depth: int >= 1
    returns: (n,) float64, the rate for each singular value, in descending order of sigma
    """
    U, s, Vt = np.linalg.svd(W)
    proj = np.einsum("ir,ij,rj->r", U, grad, Vt)
    return -depth * s ** (2.0 - 2.0 / depth) * proj
