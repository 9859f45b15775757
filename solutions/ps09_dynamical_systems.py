"""ps09 -- Dynamic System and Deep Learning: reference implementations.

Conventions (as in the notebook): every array is a ``torch.Tensor`` of dtype float64 unless
stated; a batch of N states of dimension D is an (N, D) tensor whose rows are the samples;
a weight matrix acts on a state by ``z @ K.T`` (i.e. K z for a column vector z).
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "resnet_forward",
    "euler_error_limit",
    "control_forward",
    "costates",
    "hamiltonian_argmax_binary",
    "emsa_step",
    "emsa",
    "parareal",
    "parareal_error_matrix",
    "antisym_real_part_interval",
    "verlet_forward",
    "verlet_inverse",
    "lm_residual_coefficients",
    "lm_resnet_forward",
    "lm_convergence_order",
    "characteristics_solve",
    "upwind_solve",
]


# ---------------------------------------------------------------- exercise 1
def resnet_forward(x, f, depth, T):
    """Residual network z_{l+1} = z_l + h f(t_l, z_l), h = T / depth, t_l = l h: forward Euler for
    dz/dt = f(t, z) on [0, T] (E 2017).

    x: (N, D) float64, the input z_0 (not modified)
    f: callable (t: float, z: (N, D) float64) -> (N, D) float64
    depth: int L >= 0 (L = 0: no layer); T: float > 0
    returns: (L + 1, N, D) float64, the states z_0, ..., z_L
    """
    zs = [x.clone()]
    h = T / depth if depth > 0 else 0.0
    z = x
    for layer in range(depth):
        z = z + h * f(layer * h, z)
        zs.append(z)
    return torch.stack(zs)


def euler_error_limit(A, x, T):
    """lim_{L -> inf} L (z_L - z(T)) for forward Euler with L steps on dz/dt = A z, z(0) = x:
    -(T^2 / 2) A^2 e^{T A} x.

    A: (D, D) float64; x: (D,) float64; T: float > 0
    returns: (D,) float64
    """
    E = torch.linalg.matrix_exp(T * A)
    return -(T**2 / 2) * (A @ (A @ (E @ x)))


# ---------------------------------------------------------------- exercise 2
def control_forward(x0, thetas, h):
    """States of the controlled residual network x_{t+1} = x_t + h theta_t tanh(x_t)
    (Li, Chen, Tai & E 2018; Li & Hao 2018), batch rows x_{t, n}.

    x0: (N, D) float64; thetas: (T, D, D) float64; h: float > 0
    returns: (T + 1, N, D) float64
    """
    xs = [x0.clone()]
    for t in range(thetas.shape[0]):
        xs.append(xs[-1] + h * torch.tanh(xs[-1]) @ thetas[t].T)
    return torch.stack(xs)


def costates(xs, thetas, y, h):
    """Costates of the discrete maximum principle for J = 1/(2N) sum_n ||x_{T,n} - y_n||^2
    + (lam/2) sum_t ||theta_t||_F^2: p_T = -grad Phi(x_T), p_t = grad_x H_t(x_t, p_{t+1}, theta_t),
    H_t(x, p, theta) = p . (x + h theta tanh(x)) - (lam/2)||theta||^2 (the regularizer does not
    enter the costates). Equals -dJ/dx_t.

    xs: (T + 1, N, D) float64; thetas: (T, D, D) float64; y: (N, D) float64; h: float
    returns: (T + 1, N, D) float64
    """
    N = xs.shape[1]
    p = -(xs[-1] - y) / N
    ps = [p]
    for t in range(thetas.shape[0] - 1, -1, -1):
        sech2 = 1 - torch.tanh(xs[t]) ** 2
        p = p + h * sech2 * (p @ thetas[t])
        ps.append(p)
    return torch.stack(ps[::-1])


def hamiltonian_argmax_binary(x, p_next, h):
    """argmax over theta in {-1, +1}^{D x D} of sum_n p_next_n . (x_n + h theta tanh(x_n)):
    theta = sign(p_next^T tanh(x)) (Li & Hao 2018; H is linear in theta).

    x: (N, D) float64; p_next: (N, D) float64; h: float > 0
    returns: (D, D) float64 with entries +-1
    """
    M = p_next.T @ torch.tanh(x)
    return torch.where(M >= 0, 1.0, -1.0).to(x.dtype)


def emsa_step(x0, y, thetas, h, lam, rho):
    """One iteration of the extended method of successive approximations (Li, Chen, Tai & E 2018,
    discrete form of Li & Hao 2018): with x, p the states and costates of ``thetas``, each
    new theta_t maximises the augmented Hamiltonian
    sum_n [H_t(x_tn, p_{t+1,n}, th) - rho/2 ||x_{t+1,n} - x_tn - h th tanh(x_tn)||^2
           - rho/2 ||p_tn - grad_x H_t(x_tn, p_{t+1,n}, th)||^2],
    a strictly concave quadratic in th for lam > 0 (solved exactly).

    x0: (N, D) float64; y: (N, D) float64; thetas: (T, D, D) float64
    h, lam > 0, rho >= 0: floats
    returns: (T, D, D) float64
    """
    xs = control_forward(x0, thetas, h)
    ps = costates(xs, thetas, y, h)
    D = x0.shape[1]
    eye = torch.eye(D, dtype=x0.dtype)
    new = []
    for t in range(thetas.shape[0]):
        S = torch.tanh(xs[t])                  # (N, D) s_n
        G = 1 - S**2                           # (N, D) g_n
        Q = ps[t + 1]                          # (N, D) q_n
        dx = xs[t + 1] - xs[t]                 # (N, D) = h theta_old s_n
        dp = ps[t] - Q                         # (N, D) = h g_n * (theta_old^T q_n)
        # gradient = b - A vec(theta) = 0 with vec row-major (index i * D + j)
        b = h * Q.T @ S + rho * h * dx.T @ S + rho * h * Q.T @ (dp * G)
        A = lam * torch.eye(D * D, dtype=x0.dtype)
        A = A + rho * h**2 * torch.kron(eye, S.T @ S)
        # (i, j), (k, j): sum_n q_ni g_nj^2 q_nk
        C = torch.einsum("ni,nj,nk->jik", Q, G**2, Q)  # (j, i, k)
        A2 = torch.zeros(D, D, D, D, dtype=x0.dtype)  # [i, j, k, l]
        for j in range(D):
            A2[:, j, :, j] = C[j]
        A = A + rho * h**2 * A2.reshape(D * D, D * D)
        new.append(torch.linalg.solve(A, b.reshape(-1)).reshape(D, D))
    return torch.stack(new)


def emsa(x0, y, theta0, h, lam, rho, iterations):
    """``iterations`` steps of ``emsa_step`` from theta0.

    x0, y: (N, D) float64; theta0: (T, D, D) float64; h, lam > 0, rho >= 0; iterations: int >= 0
    returns: (iterations + 1, T, D, D) float64, the iterates theta^0, ..., theta^K
    """
    out = [theta0.clone()]
    for _ in range(iterations):
        out.append(emsa_step(x0, y, out[-1], h, lam, rho))
    return torch.stack(out)


# ---------------------------------------------------------------- exercise 3
def parareal(fine, coarse, x0, n_slices, iterations):
    """Parareal (Lions, Maday & Turinici 2001): U^0 by a serial coarse sweep, then
    U^{k+1}_{n+1} = G_n(U^{k+1}_n) + F_n(U^k_n) - G_n(U^k_n), U^{k+1}_0 = x0.

    fine, coarse: callables (n: int slice index, x: (D,) float64) -> (D,) float64
    x0: (D,) float64; n_slices: int >= 1; iterations: int >= 0
    returns: (iterations + 1, n_slices + 1, D) float64, U^k_n
    """
    U = [x0.clone()]
    for n in range(n_slices):
        U.append(coarse(n, U[n]))
    history = [torch.stack(U)]
    for _ in range(iterations):
        F = [fine(n, U[n]) for n in range(n_slices)]
        G = [coarse(n, U[n]) for n in range(n_slices)]
        new = [x0.clone()]
        for n in range(n_slices):
            new.append(coarse(n, new[n]) + F[n] - G[n])
        U = new
        history.append(torch.stack(U))
    return torch.stack(history)


def parareal_error_matrix(a, b, n_slices):
    """Error propagation of parareal for a scalar linear problem with fine propagator x -> a x and
    coarse propagator x -> b x: e^{k+1} = E e^k, e^k_n = U^k_n - a^n x0 for n = 1..n_slices.
    E_ij = (a - b) b^(i - j - 1) for i > j, else 0.

    a, b: floats; n_slices: int >= 1
    returns: (n_slices, n_slices) float64
    """
    i = torch.arange(n_slices)
    diff = (i[:, None] - i[None, :] - 1).to(torch.float64)
    low = diff >= 0
    powers = torch.where(low, torch.tensor(float(b), dtype=torch.float64) ** diff.clamp(min=0), 0.0)
    return (a - b) * powers


# ---------------------------------------------------------------- exercise 4
def antisym_real_part_interval(gamma, dsigma):
    """The smallest interval [lo, hi] that contains Re(lambda) for every eigenvalue lambda of
    diag(dsigma) (W - W^T - gamma I), for every real W (Haber & Ruthotto 2017):
    [-gamma max dsigma, -gamma min dsigma].

    gamma: float >= 0; dsigma: (D,) float64, positive
    returns: (2,) float64, (lo, hi)
    """
    return torch.stack([-gamma * dsigma.max(), -gamma * dsigma.min()])


def verlet_forward(y, z, Ks, bs, h):
    """Hamiltonian-inspired network (Haber & Ruthotto 2017, Verlet):
    y_{j+1} = y_j + h tanh(K_j z_j + b_j), z_{j+1} = z_j - h tanh(K_j^T y_{j+1} + b_j).

    y, z: (N, D) float64; Ks: (L, D, D) float64; bs: (L, D) float64; h: float
    returns: (y_L, z_L), two (N, D) float64
    """
    for j in range(Ks.shape[0]):
        y = y + h * torch.tanh(z @ Ks[j].T + bs[j])
        z = z - h * torch.tanh(y @ Ks[j] + bs[j])
    return y, z


def verlet_inverse(y, z, Ks, bs, h):
    """Inverse of ``verlet_forward``: from (y_L, z_L) back to (y_0, z_0), layer by layer.

    y, z: (N, D) float64; Ks: (L, D, D) float64; bs: (L, D) float64; h: float
    returns: (y_0, z_0), two (N, D) float64
    """
    for j in range(Ks.shape[0] - 1, -1, -1):
        z = z + h * torch.tanh(y @ Ks[j] + bs[j])
        y = y - h * torch.tanh(z @ Ks[j].T + bs[j])
    return y, z


# ---------------------------------------------------------------- exercise 5
def lm_residual_coefficients(k, c):
    """Taylor coefficients of the residual of the two-step scheme u_{n+1} = (1 - k) u_n + k u_{n-1}
    + c h u'(t_n) on a smooth solution: u(t + h) - (1 - k) u(t) - k u(t - h) - c h u'(t)
    = C0 u + C1 h u' + C2 h^2 u'' + C3 h^3 u''' + O(h^4) (Lu, Zhong, Li & Dong 2018; Dahlquist's theory).

    k, c: floats
    returns: (4,) float64, (C0, C1, C2, C3)
    """
    return torch.tensor([0.0, 1 + k - c, (1 - k) / 2, (1 + k) / 6], dtype=torch.float64)


def lm_resnet_forward(u0, u1, f, k, n_steps):
    """LM-ResNet (Lu, Zhong, Li & Dong 2018): u_{n+1} = (1 - k) u_n + k u_{n-1} + f(u_n).

    u0, u1: (N, D) float64, the first two states (not modified)
    f: callable (N, D) float64 -> (N, D) float64, the residual branch
    k: float; n_steps: int >= 1
    returns: (n_steps + 1, N, D) float64, u_0, ..., u_{n_steps}
    """
    us = [u0.clone(), u1.clone()]
    for n in range(1, n_steps):
        us.append((1 - k) * us[n] + k * us[n - 1] + f(us[n]))
    return torch.stack(us)


def lm_convergence_order(k):
    """Measured order p of the global error (error at a fixed time ~ depth^-p) of LM-ResNet with the
    consistent residual branch f = (1 + k) h g, on the oscillator q' = p, p' = -q over [0, 1],
    exact second starting value; least-squares slope of log error against log depth.

    k: float in (-1, 1]
    returns: float, p > 0
    """
    T = 1.0
    u0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)

    def exact(t):
        return torch.tensor([[math.cos(t), -math.sin(t)]], dtype=torch.float64)

    depths = [50, 100, 200, 400]
    errs = []
    for L in depths:
        h = T / L
        us = lm_resnet_forward(u0, exact(h), lambda u: (1 + k) * h * torch.stack([u[:, 1], -u[:, 0]], dim=1),
                               k, L)
        errs.append(float((us[-1] - exact(T)).norm()))
    lx = torch.log(torch.tensor(depths, dtype=torch.float64))
    ly = torch.log(torch.tensor(errs, dtype=torch.float64))
    slope = ((lx - lx.mean()) * (ly - ly.mean())).sum() / ((lx - lx.mean()) ** 2).sum()
    return float(-slope)


# ---------------------------------------------------------------- exercise 6
def characteristics_solve(u0, v, x, t, depth):
    """Transport equation u_t + v(x) u_x = 0, u(x, 0) = u0(x), solved along characteristics by a
    residual network (Li & Shi 2017): X_{l+1} = X_l - (t / L) v(X_l), X_0 = x, u(x, t) ~ u0(X_L).

    u0, v: callables (M,) float64 -> (M,) float64 (u0 periodic with period 1)
    x: (M,) float64 points; t: float >= 0; depth: int L >= 1
    returns: (M,) float64
    """
    X = x.clone()
    h = t / depth
    for _ in range(depth):
        X = X - h * v(X)
    return u0(X)


def upwind_solve(u, vel, dx, t, n_steps):
    """First-order upwind scheme for u_t + v(x) u_x = 0 on a periodic grid:
    u_j <- u_j - (dt/dx) [max(v_j, 0)(u_j - u_{j-1}) + min(v_j, 0)(u_{j+1} - u_j)], dt = t / n_steps.

    u: (M,) float64 initial values on the grid (not modified); vel: (M,) float64 v at the grid points
    dx: float; t: float >= 0; n_steps: int >= 1 (stable when dt max|v| <= dx)
    returns: (M,) float64
    """
    nu = (t / n_steps) / dx * vel
    nu_p, nu_m = nu.clamp(min=0), nu.clamp(max=0)
    for _ in range(n_steps):
        u = u - nu_p * (u - torch.roll(u, 1)) - nu_m * (torch.roll(u, -1) - u)
    return u
