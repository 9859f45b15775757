"""ps01 -- Introduction to Deep Learning: reference implementations.

Dimension letters used throughout: N samples, D input features, H hidden units,
C outputs / channels, K knots, L queries, S keys, d model width, r upscale factor.
Each function names the paper (and equation) it implements; the papers are listed in ``course.toml``.
"""

import numpy as np
import torch


# ---------------------------------------------------------------- ex1: Hornik et al. 1989
def relu_interpolant(knots, values):
    """One-hidden-layer ReLU network equal to piecewise-linear interpolation (Leshno et al. 1993; Hornik et al. 1989).

    The network is f(x) = c + sum_j a_j * relu(w_j * x + b_j); it must equal
    ``numpy.interp(x, knots, values)`` for every real x (constant outside [knots[0], knots[-1]]).

    knots:  (K,) float64, strictly increasing, K >= 2
    values: (K,) float64
    returns: (w, b, a, c) -- w, b, a: (H,) float64 (H hidden units, H = K suffices); c: float
    """
    slopes = np.diff(values) / np.diff(knots)  # (K-1,)
    # each kink t_j contributes a change of slope a_j; the last one cancels the final slope
    a = np.diff(np.concatenate([[0.0], slopes, [0.0]]))  # (K,)
    w = np.ones_like(knots, dtype=np.float64)
    b = -np.asarray(knots, dtype=np.float64)
    c = float(values[0])
    return w, b, a, c


def interpolation_error_bound(knots, curvature):
    """Bound on the sup-error of piecewise-linear interpolation of g with |g''| <= curvature on [knots[0], knots[-1]].

    sup |g - p| <= curvature * max_j (t_{j+1} - t_j)^2 / 8, attained by quadratics (the classical interpolation
    error formula e(x) = -g''(xi) (x - t_j)(t_{j+1} - x) / 2).

    knots: (K,) float64, strictly increasing, K >= 2
    curvature: float >= 0, a bound C on |g''|
    returns: float
    """
    return float(curvature * np.max(np.diff(knots)) ** 2 / 8.0)


# ---------------------------------------------------------------- ex2: Ruder 2016, Sec. 4
def momentum_step(theta, grad, v, lr, gamma):
    """One step of SGD with momentum (Ruder 2016, Sec. 4.1): v <- gamma v + lr g; theta <- theta - v.

    theta, grad, v: (P,) float64 -- parameters, gradient at theta, velocity (zeros at start)
    lr, gamma: float
    returns: (theta_new, v_new), both (P,) float64
    """
    v_new = gamma * v + lr * grad
    return theta - v_new, v_new


def nesterov_step(theta, grad, buf, lr, gamma):
    """One step of Nesterov accelerated gradient (Ruder 2016, Sec. 4.2), in torch.optim.SGD's form.

    With the gradient g taken at theta: buf <- gamma buf + g; theta <- theta - lr (g + gamma buf).
    (Ruder's look-ahead form, with the gradient at theta - gamma v, is the same method
    after the change of variables theta' = theta - gamma v.)

    theta, grad, buf: (P,) float64 -- parameters, gradient at theta, momentum buffer (zeros at start)
    lr, gamma: float
    returns: (theta_new, buf_new), both (P,) float64
    """
    buf_new = gamma * buf + grad
    return theta - lr * (grad + gamma * buf_new), buf_new


def adagrad_step(theta, grad, G, lr, eps):
    """One step of Adagrad (Ruder 2016, Sec. 4.3), eps outside the root as in torch.optim.Adagrad.

    G <- G + g^2; theta <- theta - lr g / (sqrt(G) + eps)

    theta, grad, G: (P,) float64 -- parameters, gradient, sum of squared gradients (zeros at start)
    lr, eps: float
    returns: (theta_new, G_new), both (P,) float64
    """
    G_new = G + grad**2
    return theta - lr * grad / (torch.sqrt(G_new) + eps), G_new


def rmsprop_step(theta, grad, Eg2, lr, alpha, eps):
    """One step of RMSprop (Ruder 2016, Sec. 4.5), eps outside the root as in torch.optim.RMSprop.

    E[g^2] <- alpha E[g^2] + (1 - alpha) g^2; theta <- theta - lr g / (sqrt(E[g^2]) + eps)

    theta, grad, Eg2: (P,) float64 -- parameters, gradient, running mean of g^2 (zeros at start)
    lr, alpha, eps: float
    returns: (theta_new, Eg2_new), both (P,) float64
    """
    Eg2_new = alpha * Eg2 + (1 - alpha) * grad**2
    return theta - lr * grad / (torch.sqrt(Eg2_new) + eps), Eg2_new


def adam_step(theta, grad, m, v, t, lr, beta1, beta2, eps):
    """One step of Adam (Ruder 2016, Sec. 4.6; Kingma & Ba 2015, Algorithm 1).

    m <- b1 m + (1 - b1) g; v <- b2 v + (1 - b2) g^2; m_hat = m / (1 - b1^t); v_hat = v / (1 - b2^t);
    theta <- theta - lr m_hat / (sqrt(v_hat) + eps)

    theta, grad, m, v: (P,) float64 -- parameters, gradient, first and second moments (zeros at start)
    t: int -- number of this step, 1 for the first step
    lr, beta1, beta2, eps: float
    returns: (theta_new, m_new, v_new), all (P,) float64
    """
    m_new = beta1 * m + (1 - beta1) * grad
    v_new = beta2 * v + (1 - beta2) * grad**2
    m_hat = m_new / (1 - beta1**t)
    v_hat = v_new / (1 - beta2**t)
    return theta - lr * m_hat / (torch.sqrt(v_hat) + eps), m_new, v_new


# ---------------------------------------------------------------- ex3: Goodfellow et al. 2016, Ch. 6
def mlp_forward(X, W1, b1, W2, b2):
    """Two-layer tanh MLP (Goodfellow et al. 2016, Sec. 6.5): Yhat = tanh(X W1 + b1) W2 + b2.

    X: (N, D), W1: (D, H), b1: (H,), W2: (H, C), b2: (C,) -- float64 tensors
    returns: Yhat (N, C) float64
    """
    return torch.tanh(X @ W1 + b1) @ W2 + b2


def mlp_loss_and_grads(X, Y, W1, b1, W2, b2):
    """Loss and its gradients by hand-written back-propagation (Goodfellow et al. 2016, Alg. 6.4).

    loss = 1/(2N) * sum_{n,c} (Yhat[n, c] - Y[n, c])^2 with Yhat = mlp_forward(X, W1, b1, W2, b2).

    X: (N, D), Y: (N, C), W1: (D, H), b1: (H,), W2: (H, C), b2: (C,) -- float64 tensors
    returns: (loss, dW1, db1, dW2, db2) -- loss a 0-dim float64 tensor, each gradient shaped as its parameter
    """
    N = X.shape[0]
    A = torch.tanh(X @ W1 + b1)  # (N, H)
    R = A @ W2 + b2 - Y  # (N, C)
    loss = 0.5 * (R**2).sum() / N
    dYhat = R / N
    dW2 = A.T @ dYhat
    db2 = dYhat.sum(0)
    dZ = (dYhat @ W2.T) * (1 - A**2)  # tanh' = 1 - tanh^2
    dW1 = X.T @ dZ
    db1 = dZ.sum(0)
    return loss, dW1, db1, dW2, db2


def numerical_gradient(f, x, h=1e-5):
    """Centred finite-difference gradient (Goodfellow et al. 2016, Sec. 11.5).

    g_i = (f(x + h e_i) - f(x - h e_i)) / (2 h) for every entry i of x; x is left unchanged.

    f: callable, tensor shaped like x -> scalar (float or 0-dim tensor)
    x: (*S) float64 tensor, any shape S
    h: float, step
    returns: (*S) float64 tensor
    """
    grad = torch.zeros_like(x)
    flat = grad.reshape(-1)
    for i in range(x.numel()):
        e = torch.zeros_like(x).reshape(-1)
        e[i] = h
        e = e.reshape(x.shape)
        flat[i] = (float(f(x + e)) - float(f(x - e))) / (2 * h)
    return grad


# ---------------------------------------------------------------- ex4: Kramer 1991 (linear case, then nonlinear PCA)
def principal_subspace(X, k):
    """Top-k principal directions and the spectrum of the (1/N) sample covariance of X.

    X: (N, D) float64 tensor; k: int, 1 <= k <= D
    returns: (U, lam) -- U (D, k) float64 with orthonormal columns spanning the top-k eigenvectors;
             lam (D,) float64, all eigenvalues of (X - mean)^T (X - mean) / N in descending order
    """
    Xc = X - X.mean(0)
    lam, V = torch.linalg.eigh(Xc.T @ Xc / X.shape[0])  # ascending
    lam, V = lam.flip(0), V.flip(1)
    return V[:, :k], lam


def train_linear_autoencoder(X, k, generator, steps=2000, lr=0.1):
    """Linear autoencoder trained by full-batch gradient descent (Kramer 1991; Baldi & Hornik 1989).

    Minimises (1/N) ||Xc - Xc W_enc W_dec||_F^2 over W_enc, W_dec, with Xc = X - mean(X) and
    initial weights drawn N(0, 0.1^2) with ``generator``; ``steps`` steps of size ``lr``.

    X: (N, D) float64 tensor; k: int, number of hidden units; generator: torch.Generator
    returns: (W_enc, W_dec) -- (D, k) and (k, D) float64 tensors
    """
    N, D = X.shape
    Xc = X - X.mean(0)
    W_enc = 0.1 * torch.randn(D, k, generator=generator, dtype=X.dtype)
    W_dec = 0.1 * torch.randn(k, D, generator=generator, dtype=X.dtype)
    for _ in range(steps):
        Z = Xc @ W_enc  # (N, k)
        R = Z @ W_dec - Xc  # (N, D)
        g_dec = (2 / N) * Z.T @ R
        g_enc = (2 / N) * Xc.T @ (R @ W_dec.T)
        W_enc, W_dec = W_enc - lr * g_enc, W_dec - lr * g_dec
    return W_enc, W_dec


def arc_pca_error(alpha):
    """1-D PCA reconstruction error of an arc of the unit circle (the case Kramer's nonlinear PCA is built for).

    Points x = (cos theta, sin theta) with theta uniform on [-alpha, alpha], in the limit of infinitely many
    points; the error is the mean squared distance of x to its projection on the best line (the first principal
    axis through the mean).

    alpha: float in (0, pi]
    returns: float
    """
    s = np.sin(2 * alpha) / (4 * alpha)
    var_cos = 0.5 + s - (np.sin(alpha) / alpha) ** 2  # E cos^2 - (E cos)^2
    var_sin = 0.5 - s  # E sin = 0
    return float(min(var_cos, var_sin))  # the covariance is diagonal (theta -> -theta symmetry)


def autoassociative_forward(X, params):
    """Kramer's (1991) autoassociative network: tanh mapping layer, linear bottleneck, tanh demapping layer, linear output.

    X: (N, D) float64; params: [W_map (D, M), b_map (M,), W_bot (M, k), b_bot (k,),
    W_demap (k, M), b_demap (M,), W_out (M, D), b_out (D,)] float64 tensors
    returns: (codes, X_hat) -- (N, k) bottleneck outputs and (N, D) reconstructions, float64
    """
    W_map, b_map, W_bot, b_bot, W_demap, b_demap, W_out, b_out = params
    codes = torch.tanh(X @ W_map + b_map) @ W_bot + b_bot
    return codes, torch.tanh(codes @ W_demap + b_demap) @ W_out + b_out


def train_autoassociative(X, params, steps=150, lr=0.05):
    """Train Kramer's autoassociative network by full-batch Adam on the mean squared reconstruction error.

    The loss is the mean over the N samples of ||x_n - x_hat_n||^2 (squared error summed over the D features).

    X: (N, D) float64; params: the 8 initial weight tensors of ``autoassociative_forward`` (not modified)
    steps: int, number of Adam steps; lr: float, Adam's learning rate (other Adam settings torch's defaults)
    returns: list of the 8 trained weight tensors, shapes as in ``params``, float64
    """
    p = [q.detach().clone().requires_grad_() for q in params]
    opt = torch.optim.Adam(p, lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((autoassociative_forward(X, p)[1] - X) ** 2).sum(1).mean()
        loss.backward()
        opt.step()
    return [q.detach() for q in p]


# ---------------------------------------------------------------- ex5: Lawrence et al. 1997; He et al. 2016
def conv2d(x, w, b, stride=1, padding=0):
    """2-D convolution layer (cross-correlation, as in Lawrence et al. 1997 and torch), via unfold.

    out[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] * xpad[n, c, i*stride + p, j*stride + q],
    with xpad = x zero-padded by ``padding`` on every side. Must not call torch's convolution.

    x: (N, C, H, W) float64; w: (O, C, kH, kW) float64; b: (O,) float64; stride, padding: int
    returns: (N, O, (H + 2 padding - kH) // stride + 1, (W + 2 padding - kW) // stride + 1) float64
    """
    N, _, H, W = x.shape
    O, _, kH, kW = w.shape
    Ho = (H + 2 * padding - kH) // stride + 1
    Wo = (W + 2 * padding - kW) // stride + 1
    cols = torch.nn.functional.unfold(x, (kH, kW), padding=padding, stride=stride)  # (N, C kH kW, Ho Wo)
    out = w.reshape(O, -1) @ cols + b[:, None]  # (N, O, Ho Wo)
    return out.reshape(N, O, Ho, Wo)


def residual_block(x, W1, b1, W2, b2):
    """Residual block y = x + F(x), F(x) = relu(x W1 + b1) W2 + b2 (He et al. 2016, eq. 1).

    x: (N, d), W1: (d, H), b1: (H,), W2: (H, d), b2: (d,) -- float64 tensors
    returns: (N, d) float64
    """
    return x + torch.relu(x @ W1 + b1) @ W2 + b2


def deep_net_forward(X, params, residual):
    """A deep fully connected network, plain or residual (He et al. 2016's comparison at equal depth).

    h = X W_in + b_in; each block maps h to F(h) (plain) or h + F(h) (residual), F(h) = relu(h W1 + b1) W2 + b2;
    output h W_out + b_out.

    X: (N, D) float64; params: [W_in (D, w), b_in (w,), then W1 (w, w), b1 (w,), W2 (w, w), b2 (w,) for each
    block, then W_out (w, C), b_out (C,)] float64 tensors; residual: bool
    returns: (N, C) float64
    """
    h = X @ params[0] + params[1]
    for j in range(2, len(params) - 2, 4):
        W1, b1, W2, b2 = params[j:j + 4]
        h = residual_block(h, W1, b1, W2, b2) if residual else torch.relu(h @ W1 + b1) @ W2 + b2
    return h @ params[-2] + params[-1]


def train_deep_net(X, Y, params, residual, steps, lr):
    """Train ``deep_net_forward`` by full-batch Adam on the mean squared error, from the given weights.

    X: (N, D), Y: (N, C) float64; params: initial weights as in ``deep_net_forward`` (not modified);
    residual: bool; steps: int; lr: float, Adam's learning rate (other settings torch's defaults)
    returns: (steps + 1,) float64 -- the training loss (mean over the N C entries) before each step and after the last
    """
    p = [q.detach().clone().requires_grad_() for q in params]
    opt = torch.optim.Adam(p, lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = ((deep_net_forward(X, p, residual) - Y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        losses.append(((deep_net_forward(X, p, residual) - Y) ** 2).mean().item())
    return torch.tensor(losses, dtype=torch.float64)


# ---------------------------------------------------------------- ex6: Vaswani et al. 2017
def scaled_dot_product_attention(q, k, v, mask=None):
    """Scaled dot-product attention (Vaswani et al. 2017, eq. 1): softmax(q k^T / sqrt(d_k)) v.

    q: (*B, L, d_k), k: (*B, S, d_k), v: (*B, S, d_v) float64 tensors (*B any batch dimensions)
    mask: None or (L, S) bool tensor, True where query l may attend to key s (every row has a True)
    returns: (*B, L, d_v) float64
    """
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5  # (*B, L, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def sinusoidal_positional_encoding(L, d):
    """Sinusoidal positional encoding (Vaswani et al. 2017, Sec. 3.5): PE[pos, 2i] = sin(pos / 10000^(2i/d)),
    PE[pos, 2i+1] = cos(pos / 10000^(2i/d)) (the definition; the notebook states it in markdown).

    L: int, number of positions; d: int, even model width
    returns: (L, d) float64 tensor
    """
    pos = torch.arange(L, dtype=torch.float64)[:, None]  # (L, 1)
    two_i = torch.arange(0, d, 2, dtype=torch.float64)  # (d/2,)
    angle = pos / 10000.0 ** (two_i / d)  # (L, d/2)
    pe = torch.zeros(L, d, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)
    return pe


def pe_shift_matrix(k, d):
    """The linear map that shifts the sinusoidal positional encoding by k positions (Vaswani et al. 2017, Sec. 3.5).

    k: int (any sign), the shift; d: int, even model width
    returns: (d, d) float64 tensor T with sinusoidal_positional_encoding(L, d)[t + k] == T @ ...[t] for all t
    """
    omega = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # (d/2,)
    c, s = torch.cos(k * omega), torch.sin(k * omega)
    T = torch.zeros(d, d, dtype=torch.float64)
    T[0::2, 0::2] = torch.diag(c)  # sin(w (t + k)) = sin(w t) cos(w k) + cos(w t) sin(w k)
    T[0::2, 1::2] = torch.diag(s)
    T[1::2, 0::2] = torch.diag(-s)  # cos(w (t + k)) = cos(w t) cos(w k) - sin(w t) sin(w k)
    T[1::2, 1::2] = torch.diag(c)
    return T


# ---------------------------------------------------------------- ex7: Ledig et al. 2017
def pixel_shuffle(x, r):
    """Sub-pixel convolution rearrangement used by SRGAN's upsampling blocks (Ledig et al. 2017, Fig. 4).

    out[n, c, h r + i, w r + j] = x[n, c r^2 + i r + j, h, w]. Must not call torch's pixel_shuffle.

    x: (N, C r^2, H, W) tensor; r: int, upscale factor
    returns: (N, C, H r, W r) tensor, same dtype
    """
    N, Cr2, H, W = x.shape
    C = Cr2 // (r * r)
    return x.reshape(N, C, r, r, H, W).permute(0, 1, 4, 2, 5, 3).reshape(N, C, H * r, W * r)


def psnr(x, y, max_val=1.0):
    """Peak signal-to-noise ratio per image, the SR metric reported by Ledig et al. 2017 (Tables 1-2), 10 log10(max^2 / MSE).

    x, y: (N, C, H, W) float64 tensors; max_val: float, the largest possible pixel value
    returns: (N,) float64, the PSNR in dB of each image pair (MSE over C, H, W of that image)
    """
    mse = ((x - y) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(max_val**2 / mse)


def expected_psnr_gaussian(sigma, n_pixels, max_val=1.0):
    """Expected PSNR (dB) of an image of n_pixels values corrupted by i.i.d. N(0, sigma^2) noise (no clipping).

    The expectation is over the noise; the PSNR of one draw is that of ``psnr`` between the noisy and the clean image.
    n MSE / sigma^2 is chi^2_n, so E PSNR = 10 log10(max^2 / sigma^2) - 10 / ln 10 * (digamma(n / 2) + ln(2 / n)).

    sigma: float > 0; n_pixels: int >= 1 (all channels and pixels of the image); max_val: float
    returns: float
    """
    from scipy.special import digamma

    # n MSE / sigma^2 ~ chi^2_n = 2 Gamma(n / 2), and E log Gamma(a) = digamma(a)
    e_log_mse = 2 * np.log(sigma) + np.log(2.0 / n_pixels) + digamma(n_pixels / 2)
    return float(10 * np.log10(max_val**2) - 10 / np.log(10) * e_log_mse)
