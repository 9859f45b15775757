"""ps08 -- Neural Tangent Kernel: infinite width, linearized training and generalization.

Conventions (shared with the notebook):

* NTK parameterisation (Jacot et al. 2018; Lee et al. 2019): with all weights
  and biases i.i.d. N(0, 1),
  ``h^(1) = sigma_w / sqrt(D) W^(1) x + sigma_b b^(1)``,
  ``h^(l+1) = sigma_w / sqrt(n_l) W^(l+1) relu(h^(l)) + sigma_b b^(l+1)``, and the network output is
  ``f(x) = h^(L+1)`` (scalar). ``depth = L`` is the number of hidden layers, ``weight_var = sigma_w^2``,
  ``bias_var = sigma_b^2``. The fan-in ``n_l`` of every layer (``D`` for the first) divides the weight variance.
* Squared loss is summed, not averaged: ``L(theta) = 1/2 sum_i (f(x_i) - y_i)^2``; gradient descent
  takes ``steps`` discrete steps of size ``lr``.

Tensors are torch tensors; N, M are numbers of points, D the input dimension, P the number of parameters.
"""

import itertools
import math

import torch


def relu_nngp(X1, X2, depth, weight_var=2.0, bias_var=0.0):
    """NNGP kernel: covariance of the outputs at initialisation of an infinitely wide ReLU network.

    Neal (1996) for one hidden layer; Lee et al. (2018) and Matthews et al. (2018) for any depth; Jacot et al.
    (2018, Proposition 1) in the NTK parameterisation. With the arc-cosine kernel of degree 1 (Cho & Saul 2009):
    Sigma^(l+1)(x, x') = sigma_w^2 sqrt(q q') (sin t + (pi - t) cos t) / (2 pi) + sigma_b^2, cos t = Sigma^(l) / sqrt(q q').

    X1: (N, D) float64 -- inputs (nonzero rows, or bias_var > 0)
    X2: (M, D) float64
    depth: int >= 0 -- number of hidden layers L (depth 0 is the linear kernel)
    weight_var: float -- sigma_w^2;  bias_var: float -- sigma_b^2
    returns: (N, M) float64 -- Sigma^(L+1)(X1, X2) = lim Cov(f(X1), f(X2))
    """
    d = X1.shape[1]
    sigma = weight_var * (X1 @ X2.T) / d + bias_var
    q1 = weight_var * (X1 * X1).sum(dim=1) / d + bias_var
    q2 = weight_var * (X2 * X2).sum(dim=1) / d + bias_var
    for _ in range(depth):
        norm = torch.sqrt(q1[:, None] * q2[None, :])
        cos = torch.clamp(sigma / norm, -1.0, 1.0)
        angle = torch.arccos(cos)
        sigma = weight_var * norm * (torch.sin(angle) + (math.pi - angle) * cos) / (2 * math.pi) + bias_var
        q1 = weight_var * q1 / 2 + bias_var
        q2 = weight_var * q2 / 2 + bias_var
    return sigma


def relu_ntk(X1, X2, depth, weight_var=2.0, bias_var=0.0):
    """Analytic NTK of a depth-``depth`` ReLU network in the NTK parameterisation.

    Jacot et al. (2018), Theorem 1 (the recursion Theta^(l+1) = Theta^(l) * dot-Sigma^(l+1) + Sigma^(l+1));
    Arora et al. (2019, exact computation), the fully-connected NTK recursion, with the ReLU arc-cosine formulas.

    X1: (N, D) float64 -- inputs (nonzero rows, or bias_var > 0)
    X2: (M, D) float64
    depth: int >= 0 -- number of hidden layers L (depth 0 is the linear kernel)
    weight_var: float -- sigma_w^2;  bias_var: float -- sigma_b^2
    returns: (N, M) float64 -- Theta^(L+1)(X1, X2)
    """
    d = X1.shape[1]
    sigma = weight_var * (X1 @ X2.T) / d + bias_var
    q1 = weight_var * (X1 * X1).sum(dim=1) / d + bias_var
    q2 = weight_var * (X2 * X2).sum(dim=1) / d + bias_var
    theta = sigma
    for _ in range(depth):
        norm = torch.sqrt(q1[:, None] * q2[None, :])
        cos = torch.clamp(sigma / norm, -1.0, 1.0)
        angle = torch.arccos(cos)
        sigma_dot = weight_var * (math.pi - angle) / (2 * math.pi)
        sigma = weight_var * norm * (torch.sin(angle) + (math.pi - angle) * cos) / (2 * math.pi) + bias_var
        theta = theta * sigma_dot + sigma
        q1 = weight_var * q1 / 2 + bias_var
        q2 = weight_var * q2 / 2 + bias_var
    return theta


class NTKMLP(torch.nn.Module):
    """Scalar-output ReLU MLP in the NTK parameterisation (Jacot et al. 2018).

    in_dim: int D;  width: int n (every hidden layer);  depth: int L >= 0 hidden layers
    weight_var, bias_var: floats sigma_w^2, sigma_b^2
    generator: torch.Generator -- the only source of randomness; weights and biases i.i.d. N(0, 1)
    dtype: torch dtype of the parameters
    Attributes: ``layers`` -- torch.nn.ModuleList of L + 1 torch.nn.Linear, layer l of shape (n_l -> n_{l+1}).
    forward: x (N, D) -> (N,) = f(x) = h^(L+1)(x) with the sigma_w / sqrt(fan_in) and sigma_b factors.
    """

    def __init__(self, in_dim, width, depth, weight_var=2.0, bias_var=0.0, generator=None, dtype=torch.float64):
        super().__init__()
        self.weight_std = math.sqrt(weight_var)
        self.bias_std = math.sqrt(bias_var)
        dims = [in_dim] + [width] * depth + [1]
        self.layers = torch.nn.ModuleList()
        for fan_in, fan_out in itertools.pairwise(dims):
            layer = torch.nn.Linear(fan_in, fan_out, dtype=dtype)
            with torch.no_grad():
                layer.weight.copy_(torch.randn(fan_out, fan_in, generator=generator, dtype=dtype))
                layer.bias.copy_(torch.randn(fan_out, generator=generator, dtype=dtype))
            self.layers.append(layer)

    def forward(self, x):
        h = x
        for i, layer in enumerate(self.layers):
            h = self.weight_std / math.sqrt(layer.in_features) * (h @ layer.weight.T) + self.bias_std * layer.bias
            if i < len(self.layers) - 1:
                h = torch.relu(h)
        return h[:, 0]


def empirical_ntk(model, X1, X2):
    """Empirical (finite-width) NTK Theta(x, x') = <d f(x)/d theta, d f(x')/d theta> (Jacot et al. 2018).

    model: torch.nn.Module with scalar outputs, model(X) of shape (N,) or (N, 1); all its parameters count
    X1: (N, D);  X2: (M, D) -- same dtype as the model
    returns: (N, M) -- sum over all parameters of J(X1) J(X2)^T; the model is not modified
    """
    params = {name: p.detach() for name, p in model.named_parameters()}

    def outputs(p, X):
        return torch.func.functional_call(model, p, (X,)).reshape(-1)

    jac1 = torch.func.jacrev(outputs)(params, X1)
    jac2 = torch.func.jacrev(outputs)(params, X2)
    theta = torch.zeros(X1.shape[0], X2.shape[0], dtype=X1.dtype)
    for name in params:
        theta = theta + jac1[name].reshape(X1.shape[0], -1) @ jac2[name].reshape(X2.shape[0], -1).T
    return theta


def linearized_predictions(ntk_train, ntk_test, f0_train, f0_test, y, lr, steps):
    """Outputs of the linearized network after ``steps`` steps of gradient descent (Lee et al. 2019, closed form for MSE).

    The linearized model f_lin(x) = f_0(x) + J_0(x)(theta - theta_0) trained on L = 1/2 sum_i (f(x_i) - y_i)^2 by
    theta <- theta - lr grad L has residual r_k = (I - lr Theta)^k r_0 on the training set, and on test points
    f_k(x) = f_0(x) - Theta(x, X) Theta^{-1} (I - (I - lr Theta)^k) r_0, with r_0 = f_0(X) - y.

    ntk_train: (N, N) -- Theta(X, X), symmetric positive semi-definite
    ntk_test: (M, N) -- Theta(X_test, X)
    f0_train: (N,);  f0_test: (M,) -- outputs at initialisation;  y: (N,) -- targets
    lr: float;  steps: int >= 0
    returns: tuple (f_train (N,), f_test (M,)) -- outputs after ``steps`` steps
    """
    evals, evecs = torch.linalg.eigh(ntk_train)
    decay = (1 - lr * evals) ** steps
    coef = evecs.T @ (f0_train - y)
    f_train = y + evecs @ (decay * coef)
    tiny = evals.abs() <= 1e-12 * evals.abs().max()
    safe = torch.where(tiny, torch.ones_like(evals), evals)
    gain = torch.where(tiny, lr * steps * torch.ones_like(evals), (1 - decay) / safe)
    f_test = f0_test - ntk_test @ (evecs @ (gain * coef))
    return f_train, f_test


def critical_lr(model, X):
    """Largest stable learning rate of gradient descent on the linearisation of ``model`` (summed squared loss).

    The linearised residual evolves as r_{k+1} = (I - lr Theta) r_k with Theta = Theta_hat(X, X) the empirical NTK,
    so gradient descent converges from every initial residual iff 0 < lr < 2 / lambda_max(Theta).

    model: torch.nn.Module with scalar outputs;  X: (N, D) training inputs (same dtype as the model)
    returns: float -- 2 / lambda_max(Theta_hat(X, X))
    """
    return 2.0 / torch.linalg.eigvalsh(empirical_ntk(model, X, X)).max().item()


def linearization_gap(model, X, y, X_test, lr, steps):
    """Distance between a network and its linearisation along gradient-descent training (Lee et al. 2019, Thm 2.1).

    Trains ``model`` in place by ``steps`` steps theta <- theta - lr grad 1/2 sum_i (f(x_i) - y_i)^2 and compares
    its test outputs after every step with those of its linearisation around the parameters at the call, trained
    the same way (``linearized_predictions`` with the empirical NTK at the call).

    model: torch.nn.Module with scalar outputs;  X: (N, D);  y: (N,);  X_test: (M, D);  lr: float;  steps: int >= 0
    returns: (steps + 1,) tensor -- entry k is ||f_k(X_test) - f^lin_k(X_test)||_2 after k steps (entry 0 is 0)
    """
    with torch.no_grad():
        f0, f0_test = model(X).reshape(-1), model(X_test).reshape(-1)
    ntk, ntk_test = empirical_ntk(model, X, X), empirical_ntk(model, X_test, X)
    params = list(model.parameters())
    gaps = []
    for k in range(steps + 1):
        _, f_lin = linearized_predictions(ntk, ntk_test, f0, f0_test, y, lr, k)
        with torch.no_grad():
            gaps.append((model(X_test).reshape(-1) - f_lin).norm())
        if k < steps:
            grads = torch.autograd.grad(0.5 * ((model(X).reshape(-1) - y) ** 2).sum(), params)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    p -= lr * g
    return torch.stack(gaps)


def arora_gram(X):
    """Gram matrix H^infty of a two-layer ReLU network with trained first layer (Arora et al. 2019 fine-grained).

    H_ij = E_{w ~ N(0, I)}[x_i^T x_j 1{w^T x_i >= 0, w^T x_j >= 0}] = x_i^T x_j (pi - arccos(x_i^T x_j)) / (2 pi).

    X: (N, D) float64 -- rows of unit norm
    returns: (N, N) float64
    """
    gram = X @ X.T
    return gram * (math.pi - torch.arccos(torch.clamp(gram, -1.0, 1.0))) / (2 * math.pi)


def generalization_bound(H, y):
    """Data-dependent complexity sqrt(2 y^T H^{-1} y / n) (Arora et al. 2019 fine-grained, Theorem 5.1).

    H: (N, N) float64 -- positive definite Gram matrix H^infty
    y: (N,) float64 -- labels
    returns: () float64 tensor
    """
    return torch.sqrt(2 * (y @ torch.linalg.solve(H, y)) / y.shape[0])


def predicted_residual_curve(H, y, lr, steps):
    """Predicted training residual ||y - u(k)||_2 = sqrt(sum_i (1 - lr lambda_i)^(2k) (v_i^T y)^2).

    Arora et al. (2019 fine-grained), Theorem 4.1, for u(0) = 0; (lambda_i, v_i) are eigenpairs of H.

    H: (N, N) float64 -- symmetric Gram matrix;  y: (N,) float64;  lr: float;  steps: int >= 0
    returns: (steps + 1,) float64 -- entry k is the residual norm after k steps, k = 0..steps
    """
    evals, evecs = torch.linalg.eigh(H)
    proj = (evecs.T @ y) ** 2
    k = torch.arange(steps + 1, dtype=H.dtype)
    decay = (1 - lr * evals)[None, :] ** (2 * k[:, None])
    return torch.sqrt(decay @ proj)


def kernel_ridge_predict(K_train, K_test, y, ridge):
    """Kernel ridge regression K(X_test, X)(K(X, X) + ridge I)^{-1} y (Hu, Li & Yu 2019; ridge = 0 interpolates).

    K_train: (N, N) float64 -- positive (semi-)definite;  K_test: (M, N) float64;  y: (N,) float64
    ridge: float >= 0 (K_train must be invertible if ridge = 0)
    returns: (M,) float64
    """
    eye = torch.eye(K_train.shape[0], dtype=K_train.dtype)
    return K_test @ torch.linalg.solve(K_train + ridge * eye, y)


def fit_distance_to_init(model, X, y, ridge, lr, steps):
    """Full-batch gradient descent with the distance-to-initialisation regulariser (Hu, Li & Yu 2019, method 1).

    Minimises L(theta) = 1/2 sum_i (f(x_i) - y_i)^2 + ridge / 2 ||theta - theta_0||^2 over all parameters of
    ``model`` (theta_0 = the parameters when the function is called) by theta <- theta - lr grad L, in place.

    model: torch.nn.Module, model(X) of shape (N,) or (N, 1);  X: (N, D);  y: (N,)
    ridge: float >= 0;  lr: float;  steps: int >= 0
    returns: (steps,) tensor -- L(theta) before each step
    """
    params = list(model.parameters())
    init = [p.detach().clone() for p in params]
    losses = []
    for _ in range(steps):
        fit = 0.5 * ((model(X).reshape(-1) - y) ** 2).sum()
        penalty = 0.5 * ridge * sum(((p - p0) ** 2).sum() for p, p0 in zip(params, init))
        loss = fit + penalty
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= lr * g
        losses.append(loss.detach())
    return torch.stack(losses) if losses else torch.zeros(0)
