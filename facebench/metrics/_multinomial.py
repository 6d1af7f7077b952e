"""The solver behind :class:`facebench.metrics.ood_scores.LinearProbe`: L2-penalised multinomial logistic regression.

Objective (scikit-learn's ``LogisticRegression(C)``, multinomial, bias unpenalised), on rows ``x_i`` and labels
``y_i`` in ``0..K-1``::

    f(W, b) = sum_i [logsumexp(z_i) - z_{i, y_i}] + ||W||_F^2 / (2 C),   z_i = W x_i + b

Conventions: ``theta = [W | b]`` is ``(K, d + 1)`` and acts on ``[x, 1]``; the gradient and the tolerance are
those of ``f`` in these coordinates (a sum over samples, not a mean). ``f`` does not change when one vector is
added to every row of ``[0 | b]``, and the penalty is smallest when the rows of ``W`` sum to zero, so the
minimiser returned has rows summing to zero (the bias too: the one free direction is fixed that way).

Method, for ``K (d + 1) <= DENSE_MAX`` (the demo's probes: 6 x 65): (1) L-BFGS (SciPy) in whitened
coordinates ``theta = Q phi T`` -- ``Q`` an orthonormal basis of the class vectors summing to zero, ``T = L^-1``
with ``L L^T = X~^T X~ / 2 + diag(1/C, .., 1/C, 0)``, so that Boehning's bound on the Hessian becomes the
identity -- until its gradient falls below ``STAGE1_RTOL`` of the one at the start; (2) Newton steps with the
exact Hessian (Cholesky; a factorisation is reused while the steps converge fast), each accepted when it lowers
``f`` or the gradient, until ``max |grad f| <= tol``. The fit is then within ``tol`` of stationarity whatever
path stage 1 took (the single L-BFGS run this replaced stopped on its relative-decrease test at max-abs
gradients of ~1e-5..1e-4, ~5e-6 from the minimiser on the demo's probes). Larger problems, where a Hessian
costs more than L-BFGS saves, run stage 1 alone with that earlier stopping rule (``gtol = tol`` on the
whitened gradient, relative decrease ``<= 64 eps``); whitening makes it 1.4-3x faster than the plain run.

Classes without samples are left out of the fit and get a zero weight row and a bias low enough that their
probability mass over the fitted rows is ``<= tol / 10`` (``f``'s infimum is approached as that bias goes to
minus infinity).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Stage 1 (L-BFGS) stops when its max-abs gradient is this fraction of the one at the start.
STAGE1_RTOL = 1e-3
#: Largest ``K (d + 1)`` solved with Newton steps (its Hessian: 8 MiB of float64). Measured on 3,000 rows: at
#: 1,024 Newton and L-BFGS alone take about as long; above it the Hessian (``n (K (d + 1))^2 / 2`` products)
#: costs more than L-BFGS's iterations.
DENSE_MAX = 1024
#: A factorised Hessian is reused while each Newton step cuts the max-abs gradient at least this many times.
REUSE_CUT = 3.0


@dataclass
class MultinomialFit:
    """A fitted ``theta = [W | b]`` (``(n_classes, d + 1)``) with its loss, max-abs gradient and iteration count
    (L-BFGS iterations plus Newton steps)."""

    theta: np.ndarray
    loss: float
    grad_max: float
    n_iter: int
    converged: bool
    message: str


class _Objective:
    """``f`` and its derivatives in ``theta`` coordinates, on ``xa = [x, 1]`` (``(n, d + 1)``)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, n_classes: int, inv_c: float):
        n, d = x.shape
        self.xa = np.empty((n, d + 1))
        self.xa[:, :d], self.xa[:, d] = x, 1.0
        self.y, self.k, self.m = y, n_classes, d + 1
        self.reg = np.full(d + 1, float(inv_c))
        self.reg[d] = 0.0  # the bias is not penalised
        self.onehot = np.zeros((n_classes, n))
        self.onehot[y, np.arange(n)] = 1.0
        self.probs = None  # softmax (K, n) at the last theta given to loss_grad

    def loss_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """``f(theta)`` and its gradient ``(K, d + 1)``; keeps the softmax for :meth:`hessian`."""
        z = theta @ self.xa.T
        top = z.max(axis=0)
        e = np.exp(z - top)
        s = e.sum(axis=0)
        loss = np.sum(np.log(s) + top) - np.sum(z[self.y, np.arange(z.shape[1])]) \
            + 0.5 * float(np.sum(self.reg * theta * theta))
        self.probs = e / s
        return float(loss), (self.probs - self.onehot) @ self.xa + theta * self.reg

    def hessian(self) -> np.ndarray:
        """The Hessian at the last :meth:`loss_grad` point, row-major ``theta`` order, plus the outer product of
        the unit bias-sum direction (where ``f`` is flat) so that it is positive definite."""
        k, m, p, xa = self.k, self.m, self.probs, self.xa
        a = (p.T[:, :, None] * xa[:, None, :]).reshape(xa.shape[0], k * m)
        h = -(a.T @ a)  # one SYRK
        diag = (a.T @ xa).reshape(k, m, m)  # the blocks X~^T diag(p_c) X~
        for c in range(k):
            h[c * m:(c + 1) * m, c * m:(c + 1) * m] += diag[c]
        h[np.diag_indices_from(h)] += np.tile(self.reg, k)
        flat = np.zeros(k * m)
        flat[m - 1::m] = 1.0 / np.sqrt(k)
        h += np.outer(flat, flat)
        return h


def fit_multinomial(x: np.ndarray, y: np.ndarray, n_classes: int, inv_c: float, tol: float,
                    max_iter: int) -> MultinomialFit:
    """Minimise ``f`` on float64 rows ``x`` (``(n, d)``) and int labels ``y`` (``0..n_classes-1``, at least two
    present); ``max_iter`` bounds L-BFGS iterations plus Newton steps."""
    present = np.unique(y)
    if present.size == n_classes:
        return _fit_present(x, y, n_classes, inv_c, tol, max_iter)
    fit = _fit_present(x, np.searchsorted(present, y), present.size, inv_c, 0.9 * tol, max_iter)
    theta = np.zeros((n_classes, x.shape[1] + 1))
    theta[present] = fit.theta
    absent = np.setdiff1d(np.arange(n_classes), present)
    theta[absent, -1] = _absent_bias(x, fit.theta, tol, absent.size)
    obj = _Objective(x, y, n_classes, inv_c)
    loss, grad = obj.loss_grad(theta)
    gmax = float(np.abs(grad).max())
    return MultinomialFit(theta, loss, gmax, fit.n_iter, fit.converged, fit.message)


def _absent_bias(x: np.ndarray, theta: np.ndarray, tol: float, n_absent: int) -> float:
    """A bias for the classes without samples (zero weights) that keeps their softmax mass, weighted by each
    row's largest ``|x|`` (their gradient), at most ``tol / 10`` in all."""
    z = theta[:, :-1] @ x.T + theta[:, -1:]
    top = z.max(axis=0)
    lse = top + np.log(np.sum(np.exp(z - top), axis=0))
    weight = np.log(np.maximum(1.0, np.abs(x).max(axis=1)))
    w = weight - lse
    log_mass = w.max() + np.log(np.sum(np.exp(w - w.max())))
    return float(np.log(tol / (10.0 * n_absent)) - log_mass)


def _fit_present(x, y, k, inv_c, tol, max_iter) -> MultinomialFit:
    obj = _Objective(x, y, k, inv_c)
    if k * obj.m > DENSE_MAX:
        theta, nit, converged, message = _lbfgs(obj, max_iter, gtol=tol)
        loss, grad = obj.loss_grad(theta)
        return MultinomialFit(theta, loss, float(np.abs(grad).max()), nit, converged, message)
    theta, nit, _, _ = _lbfgs(obj, max_iter)
    theta, steps, loss, gmax, message = _newton(obj, theta, tol, max_iter - nit)
    return MultinomialFit(theta, loss, gmax, nit + steps, gmax <= tol, message)


def _lbfgs(obj: _Objective, max_iter: int, gtol: float | None = None) -> tuple[np.ndarray, int, bool, str]:
    """L-BFGS from zero in the whitened, sum-free coordinates ``phi`` (``(K - 1, d + 1)``), to the max-abs
    gradient ``gtol`` there (None: ``STAGE1_RTOL`` of the one at the start) or a relative decrease of ``f``
    below ``64 eps``; returns ``theta``, the iterations, SciPy's success flag and message."""
    from scipy import linalg, optimize
    k, m = obj.k, obj.m
    q = np.linalg.qr(np.eye(k)[:, :k - 1] - 1.0 / k)[0]  # orthonormal, columns sum to zero
    bound = 0.5 * (obj.xa.T @ obj.xa) + np.diag(obj.reg)  # Boehning's bound, per sum-free class direction
    t = linalg.solve_triangular(np.linalg.cholesky(bound), np.eye(m), lower=True)

    def fun(phi):
        loss, grad = obj.loss_grad(q @ phi.reshape(k - 1, m) @ t)
        return loss, (q.T @ grad @ t.T).ravel()

    start = np.zeros((k - 1) * m)
    if gtol is None:
        gtol = STAGE1_RTOL * float(np.abs(fun(start)[1]).max())
    res = optimize.minimize(fun, start, jac=True, method="L-BFGS-B",
                            options={"maxiter": max_iter, "gtol": gtol, "ftol": 64 * np.finfo(np.float64).eps})
    return q @ res.x.reshape(k - 1, m) @ t, int(res.nit), bool(res.success), str(res.message)


def _newton(obj: _Objective, theta: np.ndarray, tol: float, budget: int):
    """Newton steps from ``theta`` until ``max |grad| <= tol``, ``budget`` steps or no further progress;
    returns ``(theta, steps, loss, grad_max, message)``. A factorised Hessian is reused while each step cuts the
    max-abs gradient at least ``REUSE_CUT``-fold (a step then costs one gradient); otherwise it is rebuilt."""
    loss, grad = obj.loss_grad(theta)
    gmax, steps, solve, fresh = float(np.abs(grad).max()), 0, None, False
    while gmax > tol:
        if steps >= budget:
            return theta, steps, loss, gmax, "iteration limit reached"
        if solve is None:
            solve, fresh = _hessian_solver(obj), True
            if solve is None:
                return theta, steps, loss, gmax, "the Hessian is not numerically positive definite"
        found = _accept(obj, theta, -solve(grad), loss, gmax, grad)
        if found is None:
            if fresh:
                return theta, steps, loss, gmax, "no further progress (rounding)"
            obj.loss_grad(theta)  # back to this point's softmax, for a Hessian built here
            solve = None
            continue
        theta, loss, grad, new_gmax = found
        if new_gmax * REUSE_CUT > gmax:
            solve = None
        gmax, fresh, steps = new_gmax, False, steps + 1
    return theta, steps, loss, gmax, "converged"


def _hessian_solver(obj: _Objective):
    """``g -> H^-1 g`` with ``H`` the Hessian at the last :meth:`_Objective.loss_grad` point (Cholesky); when
    rounding leaves it not positive definite (saturated probabilities, a huge ``C``), ``H`` plus a ridge of
    ``1e-10`` of its largest diagonal entry; None when even that fails."""
    from scipy import linalg
    h = obj.hessian()
    for ridge in (0.0, 1e-10 * float(np.max(np.diag(h)))):
        h[np.diag_indices_from(h)] += ridge
        try:
            factor = linalg.cho_factor(h, lower=True, check_finite=False)
        except linalg.LinAlgError:
            continue
        return lambda g: linalg.cho_solve(factor, g.ravel(), check_finite=False).reshape(g.shape)
    return None


def _accept(obj: _Objective, theta, step, loss, gmax, grad, halvings: int = 30):
    """Backtrack along ``step`` until ``f`` falls (Armijo, 1e-4) or the max-abs gradient does; None if never."""
    slope = float(np.sum(grad * step))
    scale = 1.0
    for _ in range(halvings):
        cand = theta + scale * step
        new_loss, new_grad = obj.loss_grad(cand)
        new_gmax = float(np.abs(new_grad).max())
        if new_loss <= loss + 1e-4 * scale * slope or new_gmax < gmax:
            return cand, new_loss, new_grad, new_gmax
        scale *= 0.5
    return None
