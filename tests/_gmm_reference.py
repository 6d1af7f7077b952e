"""fit_gmm_1d as first written: one EM run at a time with scipy's logsumexp. The oracle of the batched EM
(tests/test_metrics_label_free.py) and its peer in tests/benchmarks/test_bench_label_free.py."""

import math

import numpy as np
from scipy import special

from facebench.metrics import label_free as lf


def _log_normal(x, means, stds):
    z = (x[:, None] - means[None, :]) / stds[None, :]
    return -0.5 * z * z - np.log(stds)[None, :] - 0.5 * math.log(2.0 * math.pi)


def reference_fit(x, n_init=5, max_iter=500, tol=1e-8, seed=0):
    """fit_gmm_1d as first written: one EM run at a time, scipy's logsumexp (the oracle of the batched EM)."""
    eps = 10.0 * np.finfo(np.float64).eps
    floor, starts = lf._gmm_starts(np.asarray(x, np.float64), n_init, seed)
    best = None
    for w, mu, sd in starts:
        prev, converged = -np.inf, False
        for _ in range(max_iter):
            logp = _log_normal(x, mu, sd) + np.log(w)[None, :]
            lse = special.logsumexp(logp, axis=1)
            ll = float(lse.mean())
            if abs(ll - prev) < tol:
                converged = True
                break
            prev = ll
            resp = np.exp(logp - lse[:, None])
            nk = resp.sum(axis=0) + eps
            w = nk / nk.sum()
            mu = (resp * x[:, None]).sum(axis=0) / nk
            sd = np.sqrt(np.maximum((resp * (x[:, None] - mu[None, :]) ** 2).sum(axis=0) / nk, floor))
        total = float(special.logsumexp(_log_normal(x, mu, sd) + np.log(w)[None, :], axis=1).sum())
        if best is None or total > best[3]:
            best = (w, mu, sd, total, converged)
    order = np.argsort(best[1], kind="stable")
    return {"weights": best[0][order], "means": best[1][order], "stds": best[2][order],
            "log_likelihood": best[3], "converged": best[4]}
