"""Scaling benchmark (issue 18, item 6): time and peak memory of every protocol's evaluation, and of the
peers' computations on the same inputs, at growing n; the fitted exponent of time in n; the issue's targets.

    python tests/benchmarks/scaling.py --sizes 1e4 1e5 1e6 --out tests/benchmarks/SCALING.md --readme README.md

Peers (benchmark-only, see the `bench` extra in pyproject.toml): ``pip install -e '.[bench]'`` and
``pip install --no-deps pytorch-ood==0.4.0`` (its declared torchvision would pull a CUDA torch). Without
them the peer columns say what is missing; everything else still runs.

Conventions (written into the table's notes as well):

* Every (case, n) is measured in a fresh ``python`` subprocess (``--child``), so no cache, allocator state
  or import is shared between measurements. Inputs are synthetic, seeded, built in memory before timing.
* time = best of R wall-clock calls (``time.perf_counter``), R = ``--repeats`` (``--repeats-large`` for a
  protocol from n >= 10^6); the peer is timed in the same subprocess, alternating with facebench, and
  ratio = facebench time / peer time.
* peak MB = peak resident set size during the first call minus the RSS of the idle import (python, numpy,
  pandas, facebench and the peer imported, no inputs built); it includes the inputs, whose own RSS is the
  ``inputs MB`` column. The peak is VmHWM of ``/proc/self/status``: the high-water mark that
  ``resource.getrusage`` reports as ru_maxrss, but without the parent's peak, which ru_maxrss carries over
  ``exec`` (ru_maxrss where there is no /proc). It is reset (``/proc/self/clear_refs``) after the inputs are
  built, so their transient building peak does not count.
* exponent = least-squares slope of log(time) on log(n) over the sizes measured; last step = the slope
  between the two largest sizes.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _procmem beside this file
from _peers import pytorch_ood_metrics  # noqa: E402
from _procmem import fit_exponent, reset_peak, status_mb  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
RESULT_TAG = "SCALING_RESULT "
README_HEADING = "### Scaling (issue 18)"
EXPRESSIONS = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger")
PRIORS = (0.3, 0.25, 0.15, 0.1, 0.08, 0.07, 0.05)


class PeerMissing(Exception):
    """A peer library is not installed (or cannot be imported); the message says what to install."""


# --------------------------------------------------------------------------- synthetic inputs

def _ids(prefix: str, n: int) -> np.ndarray:
    """``prefix0 .. prefix{n-1}`` as a compact fixed-width string array."""
    return np.char.add(prefix, np.arange(n).astype(f"U{len(str(max(n - 1, 0)))}"))


def _images(n: int):
    from facebench.data.images import ArrayImages

    return ArrayImages(np.zeros((n, 1, 1, 3), np.uint8))


def _labelled_split(name: str, n: int, rng, classes=EXPRESSIONS, model=EXPRESSIONS, priors=PRIORS,
                    skill: float = 2.0):
    """A Dataset of ``n`` samples with ``classes`` drawn from ``priors`` and float32 logits over ``model``
    (the true class, when the model has it, gets ``skill`` added: about 60-70% accuracy)."""
    from facebench.data.dataset import Dataset
    from facebench.records import Predictions

    y = rng.choice(len(classes), n, p=np.asarray(priors) / np.sum(priors))
    logits = rng.standard_normal((n, len(model)), dtype=np.float32)
    column = np.array([model.index(c) if c in model else -1 for c in classes])[y]
    has = np.flatnonzero(column >= 0)
    logits[has, column[has]] += skill
    ds = Dataset(name, "test", _ids(name, n), tuple(classes), np.asarray(classes)[y], _images(n))
    return ds, Predictions(ds.ids, {"expression": logits})


def _ctx(split, resamples: int, extras=None, head="expression", labels=EXPRESSIONS):
    from facebench.protocols.base import EvalContext

    return EvalContext(split[0], split[1], head, tuple(labels), seed=0, n_resamples=resamples,
                       extras=extras or {})


def _extra(split):
    from facebench.protocols.base import ExtraSplit

    return ExtraSplit(*split)


# --------------------------------------------------------------------------- protocol cases

def _closed_set(n, resamples, rng):
    from facebench.protocols.closed_set import ClosedSetProtocol

    return ClosedSetProtocol(), _ctx(_labelled_split("cs", n, rng), resamples)


def _imbalanced(n, resamples, rng):
    from facebench.protocols.imbalanced import ImbalancedProtocol

    train = _labelled_split("tr", n, rng)[0]
    return ImbalancedProtocol(), _ctx(_labelled_split("im", n, rng), resamples,
                                      {"train": _extra((train, None))})


def _open_set(n, resamples, rng):
    from facebench.protocols.open_set import OpenSetProtocol

    split = _labelled_split("os", n, rng, classes=EXPRESSIONS + ("contempt",), priors=PRIORS + (0.1,))
    return OpenSetProtocol(), _ctx(split, resamples)


def _fairness(n, resamples, rng):
    from facebench.data.dataset import Dataset
    from facebench.protocols.fairness import FairnessProtocol
    from facebench.records import Predictions

    gender = rng.choice(np.array(["Female", "Male"]), n)
    race = rng.choice(np.array(["Black", "White", "Asian", "Indian"]), n, p=[0.3, 0.3, 0.25, 0.15])
    logits = rng.standard_normal((n, 2), dtype=np.float32)
    logits[np.arange(n), (gender == "Male").astype(np.int64)] += 1.5
    ds = Dataset("fa", "test", _ids("fa", n), (), None, _images(n), attributes={"gender": gender, "race": race})
    ctx = _ctx((ds, Predictions(ds.ids, {"gender": logits})), resamples, head="gender", labels=("female", "male"))
    return FairnessProtocol(target="gender", by=["race"], positive="female"), ctx


def _verification(n, resamples, rng, dim: int = 32):
    """n images of n // 4 identities (4 each), n pairs (half genuine), 10 folds, 4 groups of identities."""
    from facebench.data.dataset import Dataset
    from facebench.protocols.verification import VerificationProtocol
    from facebench.records import Predictions

    ident = np.arange(n) // 4
    centres = rng.standard_normal((ident[-1] + 1, dim), dtype=np.float32)
    emb = centres[ident] + rng.standard_normal((n, dim), dtype=np.float32)
    a = rng.permutation(n)
    genuine = np.arange(n) % 2 == 0
    b = np.where(genuine, 4 * ident[a] + (a + 1 + rng.integers(0, 3, n)) % 4, rng.integers(0, n, n))
    pairs = {"a": a, "b": b, "same": ident[a] == ident[b], "fold": np.arange(n) * 10 // n,
             "group": np.array(["g0", "g1", "g2", "g3"])[ident[a] % 4]}
    ds = Dataset("ve", "test", _ids("ve", n), (), None, _images(n),
                 attributes={"subject": ident.astype(str)}, pairs=pairs)
    ctx = _ctx((ds, Predictions(ds.ids, {"features": emb})), resamples, head=None, labels=())
    return VerificationProtocol(flip=False), ctx


#: the demo suite's meta-benchmark size; its cost does not grow with n (the harness test shrinks it)
LABEL_FREE_META = {"sets_per_source": 8, "sizes": [200, 600]}


def _label_free(n, resamples, rng):
    """Task split n; an OOD source, a labelled fit split and a shifted split of n // 2 each; the demo suite's
    meta-benchmark size (8 sets per source of 200 and 600 samples), whose cost does not grow with n."""
    from facebench.protocols.label_free import LabelFreeProtocol

    half = max(n // 2, 1)
    far = _labelled_split("far", half, rng, skill=0.0)
    extras = {"ood:far": _extra((far[0], far[1])), "fit": _extra(_labelled_split("fit", half, rng)),
              "shift:shift": _extra(_labelled_split("sh", half, rng, skill=1.0))}
    proto = LabelFreeProtocol(ood_sources=[{"dataset": "far", "split": "test", "name": "far"}],
                              shifts=[{"dataset": "sh", "split": "test", "name": "shift"}], fit_split="val",
                              **LABEL_FREE_META)
    return proto, _ctx(_labelled_split("lf", n, rng), resamples, extras)


def _cross_domain(n, resamples, rng):
    """Source split n; targets A (8 classes, contempt unsupported) and B of n // 2 each."""
    from facebench.protocols.cross_domain import CrossDomainProtocol

    half = max(n // 2, 1)
    extras = {"target:A": _extra(_labelled_split("A", half, rng, classes=EXPRESSIONS + ("contempt",),
                                                 priors=PRIORS + (0.05,), skill=1.0)),
              "target:B": _extra(_labelled_split("B", half, rng, skill=1.5))}
    proto = CrossDomainProtocol(targets=[{"dataset": "A", "split": "test", "name": "A"},
                                         {"dataset": "B", "split": "test", "name": "B"}])
    return proto, _ctx(_labelled_split("cd", n, rng), resamples, extras)


def _protocol_case(builder):
    """``build`` for a protocol case: the state is (protocol, ctx); facebench's call is ``evaluate``."""
    def build(n, resamples, rng, peer):
        proto, ctx = builder(n, resamples, rng)
        return {"ours": lambda: proto.evaluate(ctx), "peer": None, "check": None}
    return build


# --------------------------------------------------------------------------- peer cases

def _import_pytorch_ood():
    """pytorch-ood's ``OODMetrics`` and a note for the table (see ``_peers.pytorch_ood_metrics``: without
    torchvision only its package ``__init__`` is skipped, said in the note)."""
    from importlib import metadata

    try:
        found = pytorch_ood_metrics()
    except ModuleNotFoundError as err:
        raise PeerMissing(f"pytorch-ood cannot import: {err}") from None
    if found is None:
        raise PeerMissing("pytorch-ood not installed: pip install --no-deps pytorch-ood==0.4.0")
    metrics, whole = found
    note = f"pytorch-ood {metadata.version('pytorch-ood')}"
    if not whole:
        note += " (metrics subpackage imported without the package __init__: torchvision absent)"
    return metrics.OODMetrics, note


def _import_torchmetrics():
    from importlib import metadata

    try:
        from torchmetrics.classification import MulticlassCalibrationError
    except ImportError as err:
        raise PeerMissing(f"torchmetrics cannot import ({err}): pip install -e '.[bench]'") from None
    return MulticlassCalibrationError, f"torchmetrics {metadata.version('torchmetrics')}"


def _import_sklearn():
    from importlib import metadata
    from sklearn.metrics import roc_curve

    return roc_curve, f"scikit-learn {metadata.version('scikit-learn')}"


def _import_pandas():
    from importlib import metadata

    import pandas as pd

    return pd, f"pandas {metadata.version('pandas')}"


def _scores(n, rng):
    """n ID-ness scores (higher = known): n // 2 known ~ N(0.5, 1), the rest unknown ~ N(0, 1)."""
    k = n // 2
    return rng.normal(0.5, 1.0, k), rng.normal(0.0, 1.0, n - k)


def _ood(n, resamples, rng, peer):
    """facebench ``ood_metrics`` (AUROC, AUPR in/out x AP/trapezoid, FPR@95 x 4 conventions, detection error)
    vs pytorch-ood ``OODMetrics`` (AUROC, AUTC, AUPR-IN/OUT, FPR95TPR) on the outlier score -s."""
    from facebench.metrics.ood import ood_metrics

    known, unknown = _scores(n, rng)
    if peer is not None:  # torch is imported by the peer's import, before the idle baseline
        import torch

        outlier = torch.from_numpy(-np.r_[known, unknown])
        labels = torch.from_numpy(np.r_[np.zeros(len(known), np.int64), -np.ones(len(unknown), np.int64)])

    def theirs():
        return peer().update(outlier, labels).compute()

    def check(ours, other):
        d = max(abs(ours["auroc"] - other["AUROC"]), abs(ours["fpr@tpr95[pos=unknown,rule=first]"] - other["FPR95TPR"]))
        return f"AUROC and FPR95 (pos=unknown, rule=first) agree within {d:.1e}"
    return {"ours": lambda: ood_metrics(known, unknown), "peer": theirs if peer else None, "check": check}


def _ece(n, resamples, rng, peer):
    """facebench ``expected_calibration_error`` vs torchmetrics ``MulticlassCalibrationError`` (15 bins, l1),
    on float64 softmax probabilities of 7 classes."""
    from facebench.metrics.calibration import expected_calibration_error

    y = rng.integers(0, 7, n)
    logits = rng.standard_normal((n, 7))
    logits[np.arange(n), y] += 1.5
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    if peer is not None:
        import torch

        probs_t, y_t = torch.from_numpy(probs), torch.from_numpy(y)

    def theirs():
        metric = peer(num_classes=7, n_bins=15, norm="l1")
        metric.update(probs_t, y_t)
        return float(metric.compute())
    return {"ours": lambda: expected_calibration_error(y, probs, n_bins=15), "peer": theirs if peer else None,
            "check": lambda ours, other: f"ECE agrees within {abs(ours - other):.1e}"}


def _roc(n, resamples, rng, peer):
    """facebench ``roc_curve_points`` vs scikit-learn ``roc_curve(..., drop_intermediate=False)`` (the same
    points: facebench keeps every threshold)."""
    from facebench.metrics.ood import roc_curve_points

    known, unknown = _scores(n, rng)
    scores = np.r_[known, unknown]
    labels = np.r_[np.ones(len(known), np.int64), np.zeros(len(unknown), np.int64)]

    def check(ours, other):
        same = len(ours[0]) == len(other[0]) and all(np.allclose(a, b) for a, b in zip(ours[:2], other[:2]))
        return f"{len(ours[0])} ROC points, {'equal to' if same else 'DIFFERENT from'} scikit-learn's"
    return {"ours": lambda: roc_curve_points(known, unknown),
            "peer": (lambda: peer(labels, scores, drop_intermediate=False)) if peer else None, "check": check}


def _csv(n, resamples, rng, peer):
    """facebench ``CsvDataset(path).load('all')`` vs pandas ``read_csv(dtype=str, keep_default_na=False)`` of
    the same file: n rows of path, label name, subject, race (the images need not exist to load)."""
    import pandas as pd

    from facebench.data.generic import CsvDataset

    folder = tempfile.TemporaryDirectory(prefix="facebench-scaling-")
    path = Path(folder.name) / "labels.csv"
    labels = np.array(["happy", "sad", "neutral", "angry", "surprise", "fear", "disgust"])
    pd.DataFrame({"path": np.char.add(np.char.add("img/", _ids("", n)), ".png"),
                  "label": labels[rng.integers(0, 7, n)], "subject": _ids("s", n) if n else [],
                  "race": rng.choice(np.array(["A", "B", "C", "D"]), n)}).to_csv(path, index=False)

    def ours():
        folder  # keeps the file alive as long as the case
        return CsvDataset(path=path).load("all")
    return {"ours": ours, "peer": (lambda: peer.read_csv(path, dtype=str, keep_default_na=False)) if peer else None,
            "check": lambda mine, other: f"{len(mine)} samples loaded, {len(other)} rows read by pandas"}


@dataclass(frozen=True)
class Case:
    """One row family of the table: ``build(n, resamples, rng, peer)`` returns the calls to time."""

    name: str
    what: str
    n_means: str
    build: Callable
    peer_name: str = ""
    prepare: Callable | None = None
    max_repeats: int | None = None  # a case whose single call takes minutes is timed once


CASES = {c.name: c for c in (
    Case("closed_set", "closed_set evaluate", "samples, 7 classes", _protocol_case(_closed_set)),
    Case("imbalanced", "imbalanced evaluate", "test samples (+ n training labels)", _protocol_case(_imbalanced)),
    Case("open_set", "open_set evaluate (msp)", "samples, 10% of an unknown class", _protocol_case(_open_set)),
    Case("fairness", "fairness evaluate (gender by race)", "samples, 4 groups", _protocol_case(_fairness)),
    Case("verification", "verification evaluate (no flip)", "pairs of n 32-d embeddings, 4 groups",
         _protocol_case(_verification)),
    Case("label_free", "label_free evaluate", "task samples (+ 3 splits of n/2)", _protocol_case(_label_free),
         max_repeats=1),
    Case("cross_domain", "cross_domain evaluate", "source samples (+ 2 targets of n/2)",
         _protocol_case(_cross_domain)),
    Case("ood", "OOD metrics", "scores (n/2 known, n/2 unknown)", _ood, "pytorch-ood OODMetrics",
         _import_pytorch_ood),
    Case("ece", "ECE", "samples, 7 classes", _ece, "torchmetrics MulticlassCalibrationError",
         _import_torchmetrics),
    Case("roc", "ROC curve points", "scores (n/2 known, n/2 unknown)", _roc,
         "scikit-learn roc_curve", _import_sklearn),
    Case("csv", "CSV loader (CsvDataset)", "rows", _csv, "pandas read_csv", _import_pandas),
)}
PROTOCOLS = tuple(name for name, c in CASES.items() if not c.peer_name)


# --------------------------------------------------------------------------- one measurement (child process)

#: imported before the idle baseline of every case, so that the baseline is the same idle import for all
BASE_IMPORTS = ("facebench.protocols.closed_set", "facebench.protocols.imbalanced", "facebench.protocols.open_set",
                "facebench.protocols.fairness", "facebench.protocols.verification", "facebench.protocols.label_free",
                "facebench.protocols.cross_domain", "facebench.data.generic", "facebench.metrics.ood",
                "facebench.metrics.calibration", "pandas")  # the peers import torch, torchmetrics, ...


def _rss_mb() -> float:
    """Current resident set size in MB (VmRSS; without /proc the peak, all that is known)."""
    rss = status_mb("VmRSS")
    return _peak_mb() if rss is None else rss


def _peak_mb() -> float:
    """Peak resident set size of this process in MB: VmHWM, the high-water mark of its own memory. Without
    /proc, ``getrusage`` ru_maxrss (KB on Linux, bytes on macOS), which after a ``posix_spawn`` also counts
    the parent's peak (the kernel carries the old memory's high-water mark over ``exec``)."""
    hwm = status_mb("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _first_call(fn, idle: float) -> tuple[float, float, Any]:
    """(seconds, peak MB above ``idle``, result) of one call, the peak reset just before it."""
    reset_peak()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    return seconds, _peak_mb() - idle, out


def _best(fn, repeats: int, first: float) -> float:
    best = first
    for _ in range(repeats - 1):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(case_name: str, n: int, resamples: int, repeats: int) -> dict:
    """Time and peak memory of one case at size n (run in a fresh process by ``--child``; callable in-process
    for tests, where the peak is then that of the calling process)."""
    import importlib

    case = CASES[case_name]
    for module in BASE_IMPORTS:
        importlib.import_module(module)
    peer, peer_note, peer_error = None, "", ""
    if case.prepare is not None:
        try:
            peer, peer_note = case.prepare()
        except PeerMissing as err:
            peer_error = str(err)
    idle = _rss_mb()
    calls = case.build(n, resamples, np.random.default_rng(0), peer)
    inputs = _rss_mb() - idle
    hwm_reset = reset_peak()
    seconds, peak, ours = _first_call(calls["ours"], idle)
    out = {"case": case_name, "n": n, "resamples": resamples, "repeats": repeats, "inputs_mb": inputs,
           "peak_mb": peak, "hwm_reset": hwm_reset, "peer_note": peer_note, "peer_error": peer_error}
    if calls["peer"] is None:
        return {**out, "seconds": _best(calls["ours"], repeats, seconds)}
    peer_seconds, peer_peak, theirs = _first_call(calls["peer"], idle)
    for _ in range(repeats - 1):  # alternate, so that a burst of load hits both sides alike
        seconds = _best(calls["ours"], 2, seconds)
        peer_seconds = _best(calls["peer"], 2, peer_seconds)
    return {**out, "seconds": seconds, "peer_seconds": peer_seconds, "peer_peak_mb": peer_peak,
            "check": calls["check"](ours, theirs)}


# --------------------------------------------------------------------------- the run (parent process)

def repeats_for(case: Case, n: int, repeats: int, repeats_large: int) -> int:
    """Calls per measurement: ``repeats``; ``repeats_large`` for a protocol from 10^6 (a peer case takes
    seconds there, and its ratio is the noisiest figure); at most the case's ``max_repeats``."""
    r = repeats_large if n >= 10**6 and not case.peer_name else repeats
    return max(1, min(r, case.max_repeats) if case.max_repeats else r)


def run_child(case_name: str, n: int, resamples: int, repeats: int, timeout: float) -> dict:
    """``measure`` in a fresh interpreter; a timeout or a crash becomes an ``error`` entry."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", case_name, "--n", str(n),
           "--resamples", str(resamples), "--repeats", str(repeats)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"case": case_name, "n": n, "resamples": resamples, "error": f"timed out after {timeout:g} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1].replace(str(REPO) + os.sep, "")
    return {"case": case_name, "n": n, "resamples": resamples, "error": f"exit {proc.returncode}: {tail[:120]}"}


def exponents(results: list[dict]) -> dict[str, dict]:
    """Per case: the fitted exponent over the sizes that ran (``value``), the slope between the two largest of
    three or more (``last``: a fixed cost flattens the fit at small n), and the first size that failed."""
    out = {}
    for case in dict.fromkeys(r["case"] for r in results):
        rows = sorted((r for r in results if r["case"] == case), key=lambda r: r["n"])
        ok = [r for r in rows if "error" not in r]
        failed = next((r for r in rows if "error" in r), None)
        out[case] = {"value": fit_exponent([r["n"] for r in ok], [r["seconds"] for r in ok]),
                     "last": fit_exponent([r["n"] for r in ok[-2:]], [r["seconds"] for r in ok[-2:]]) if
                     len(ok) > 2 else None, "sizes": [r["n"] for r in ok], "failed": failed}
    return out


def ratio(row: dict) -> float | None:
    """facebench time / peer time, None without a peer measurement."""
    peer = row.get("peer_seconds")
    return None if not peer or "seconds" not in row else row["seconds"] / peer


@dataclass(frozen=True)
class Target:
    """One "Done when" figure of issue 18: ``kind`` seconds, peak (MB), ratio or exponent at most ``limit``."""

    text: str
    case: str
    kind: str
    limit: float
    n: int | None = 10**6
    resamples: int | None = None


TARGETS = (
    Target("OOD metrics on 10^6 scores: at most 0.5x pytorch-ood's time", "ood", "ratio", 0.5),
    Target("ECE on 10^6 samples: at most 1.0x torchmetrics' time", "ece", "ratio", 1.0),
    Target("ROC points on 10^6 scores: at most 0.5x scikit-learn's time", "roc", "ratio", 0.5),
    Target("closed_set, 10^6 samples, 1,000 resamples: at most 5 s", "closed_set", "seconds", 5.0, resamples=1000),
    Target("closed_set, 10^6 samples, 1,000 resamples: at most 500 MB peak", "closed_set", "peak", 500.0,
           resamples=1000),
    Target("open_set, 10^6 samples, 1,000 resamples: at most 5 s", "open_set", "seconds", 5.0, resamples=1000),
    Target("open_set, 10^6 samples, 1,000 resamples: at most 500 MB peak", "open_set", "peak", 500.0,
           resamples=1000),
    Target("CSV loader, 10^6 rows: at most 2 s", "csv", "seconds", 2.0),
) + tuple(Target(f"{p}: fitted exponent of time in n at most 1.1", p, "exponent", 1.1, n=None) for p in PROTOCOLS)

UNITS = {"seconds": " s", "peak": " MB", "ratio": "x", "exponent": ""}


def _judge_exponent(target: Target, fit: dict | None) -> tuple[str, str]:
    if fit is None:
        return "", "not measured (case not run)"
    if fit["failed"] is not None:
        return f"{fit['failed']['error']} at n = {fmt_n(fit['failed']['n'])}", "FAIL"
    if fit["value"] is None:
        return "", "not measured (needs two sizes)"
    span = f"n = {fmt_n(fit['sizes'][0])}..{fmt_n(fit['sizes'][-1])}"
    return f"{fit['value']:.2f} ({span})", "PASS" if fit["value"] <= target.limit else "FAIL"


def judge(target: Target, results: list[dict], fits: dict) -> tuple[str, str]:
    """(measured, verdict) of one target; the verdict is PASS, FAIL or 'not measured (why)'."""
    if target.kind == "exponent":
        return _judge_exponent(target, fits.get(target.case))
    row = next((r for r in results if r["case"] == target.case and r["n"] == target.n), None)
    if row is None:
        return "", f"not measured (n = {fmt_n(target.n)} not run)"
    if "error" in row:
        return row["error"], "FAIL"
    if target.resamples is not None and row["resamples"] != target.resamples:
        return "", f"not measured (ran with {row['resamples']} resamples)"
    value = {"seconds": row["seconds"], "peak": row["peak_mb"], "ratio": ratio(row)}[target.kind]
    if value is None:
        return "", f"not measured ({row.get('peer_error') or 'no peer time'})"
    shown = f"{value:.2f}" if target.kind == "ratio" else f"{value:.3g}"
    return shown + UNITS[target.kind], "PASS" if value <= target.limit else "FAIL"


# --------------------------------------------------------------------------- the Markdown table

def fmt_n(n: int) -> str:
    """10^k for powers of ten, else the number with thousands separators."""
    k = round(np.log10(n)) if n > 0 else 0
    return f"10^{k}" if n > 0 and 10**k == n else f"{n:,}"


def _fmt_s(seconds) -> str:
    return "" if seconds is None else f"{seconds:.3g}"


def _fmt_x(value) -> str:
    return "" if value is None else f"{value:.2f}"


def _fmt_mb(mb) -> str:
    return "" if mb is None else f"{max(mb, 0.0):.0f}"


PEER_SHORT = {"ood": "pytorch-ood", "ece": "torchmetrics", "roc": "scikit-learn", "csv": "pandas"}


def table_rows(results: list[dict], fits: dict) -> list[str]:
    """One Markdown row per (case, n), sizes ascending; the exponent on each case's largest size."""
    lines = ["| what | n | time (s) | peak MB | inputs MB | exponent | last step | peer | peer time (s) | ratio |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for case in dict.fromkeys(r["case"] for r in results):
        rows = sorted((r for r in results if r["case"] == case), key=lambda r: r["n"])
        for i, r in enumerate(rows):
            last = i == len(rows) - 1
            exp = [_fmt_x(fits[case][k] if last else None) for k in ("value", "last")]
            peer = PEER_SHORT.get(case, "")
            if "error" in r:
                lines.append(f"| {CASES[case].what} | {fmt_n(r['n'])} | {r['error']} |  |  | {exp[0]} | {exp[1]} "
                             f"| {peer} |  |  |")
                continue
            peer_time = _fmt_s(r.get("peer_seconds")) or ("not installed" if r.get("peer_error") else "")
            lines.append(f"| {CASES[case].what} | {fmt_n(r['n'])} | {_fmt_s(r['seconds'])} | {_fmt_mb(r['peak_mb'])} "
                         f"| {_fmt_mb(r['inputs_mb'])} | {exp[0]} | {exp[1]} | {peer} | {peer_time} "
                         f"| {_fmt_x(ratio(r))} |")
    return lines


def target_rows(results: list[dict], fits: dict) -> list[str]:
    lines = ["| target (issue 18, Done when) | measured | result |", "|---|---|---|"]
    for target in TARGETS:
        if target.case in fits:
            measured, verdict = judge(target, results, fits)
            lines.append(f"| {target.text} | {measured} | {verdict} |")
    return lines


def notes(results: list[dict], settings: dict) -> list[str]:
    """The method and the peers' versions and agreement checks, as bullet lines."""
    hwm = all(r.get("hwm_reset", True) for r in results if "error" not in r)
    once = ", ".join(c for c in dict.fromkeys(r["case"] for r in results) if CASES[c].max_repeats == 1)
    out = [f"- time: best of {settings['repeats']} calls ({settings['repeats_large']} for a protocol from 10^6"
           + (f"; {once} once" if once else "") + "), "
           "wall clock, each (case, n) in a fresh Python process; ratio = facebench time / peer time, both timed "
           "in that process, alternating.",
           "- peak MB: peak RSS (VmHWM of /proc/self/status, the high-water mark that `getrusage` reports as "
           "ru_maxrss, without the parent's peak that ru_maxrss carries over `exec`) during the first call minus "
           "the RSS of the idle import "
           "(numpy, pandas, facebench and the peer imported, no inputs); it includes the inputs (inputs MB)."
           + (" The high-water mark is reset after the inputs are built." if hwm else
              " The high-water mark could not be reset: the peak may include building the inputs."),
           "- exponent: least-squares slope of log(time) on log(n) over all sizes, on each case's largest n; "
           "last step: the slope between the two largest sizes (a fixed cost per call flattens the fit).",
           f"- protocols: {settings['resamples']} bootstrap resamples, seed 0, synthetic seeded inputs built in "
           "memory (a `Dataset` with `ArrayImages` placeholders and stored-prediction arrays).",
           "- n counts: " + "; ".join(f"{CASES[c].what}: {CASES[c].n_means}"
                                      for c in dict.fromkeys(r["case"] for r in results)) + "."]
    for case in dict.fromkeys(r["case"] for r in results if CASES[r["case"]].peer_name):
        done = [r for r in results if r["case"] == case and "error" not in r]
        last = max(done, key=lambda r: r["n"], default=None)
        if last is not None:
            what = last.get("check") or last.get("peer_error")
            out.append(f"- {CASES[case].what} vs {last.get('peer_note') or CASES[case].peer_name}: {what} "
                       f"(n = {fmt_n(last['n'])}).")
    return out


def machine() -> str:
    """CPU model, cores, memory, OS and the versions of Python, numpy and torch."""
    cpu = platform.processor() or platform.machine()
    mem = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), cpu)
        kb = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                  if ln.startswith("MemTotal"))
        mem = f", {kb / 2**20:.0f} GiB memory"
    except (OSError, StopIteration, ValueError):
        pass
    import torch

    return (f"{cpu}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}; Python "
            f"{platform.python_version()}, numpy {np.__version__}, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads)")


def commit() -> str:
    """Short HEAD commit, and whether facebench/ had uncommitted changes when measured."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "facebench"], cwd=REPO, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"
    return f"commit {head}" + (" with uncommitted changes in facebench/" if dirty else "")


def render(results: list[dict], settings: dict) -> str:
    """The Markdown body that SCALING.md and the README section hold (no heading of level 1-3 inside)."""
    fits = exponents(results)
    head = (f"Measured {settings['date']} on {settings['machine']}; {settings['commit']}. Load average "
            f"(1 min) {settings['load_before']:.1f} before and {settings['load_after']:.1f} after, on "
            f"{os.cpu_count()} cores: timings on a loaded machine are slower than on a quiet one. "
            f"Command: `{settings['command']}`.")
    parts = [head, "\n".join(table_rows(results, fits)), "\n".join(target_rows(results, fits)),
             "\n".join(notes(results, settings))]
    return "\n\n".join(parts) + "\n"


def _section_range(lines: list[str], heading: str) -> tuple[int, int] | None:
    """Line range under ``heading`` up to the next heading of level 1-3 outside code fences, or None."""
    if heading not in lines:
        return None
    start = lines.index(heading) + 1
    fenced = False
    for i in range(start, len(lines)):
        if lines[i].startswith("```"):
            fenced = not fenced
        elif not fenced and lines[i].split(" ", 1)[0] in ("#", "##", "###"):
            return start, i
    return start, len(lines)


def section_body(readme: str, heading: str = README_HEADING) -> str | None:
    """The text of the README section under ``heading`` (stripped), or None without that heading."""
    lines = readme.splitlines()
    span = _section_range(lines, heading)
    return None if span is None else "\n".join(lines[span[0]:span[1]]).strip() + "\n"


def scaling_body(markdown: str) -> str:
    """SCALING.md without its title line."""
    return markdown.split("\n", 1)[1].strip() + "\n"


def write_readme(path: Path, body: str, heading: str = README_HEADING) -> None:
    """Replace the README section under ``heading`` with ``body``, or append the section at the end."""
    lines = path.read_text().splitlines()
    span = _section_range(lines, heading)
    if span is None:
        while lines and not lines[-1].strip():
            lines.pop()
        lines += ["", heading]
        span = (len(lines), len(lines))
    tail = lines[span[1]:]
    new = lines[:span[0]] + [""] + body.rstrip("\n").split("\n") + ([""] if tail else []) + tail
    path.write_text("\n".join(new) + "\n")


# --------------------------------------------------------------------------- command line

def _size(text: str) -> int:
    try:
        n = int(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; write 10000 or 1e4") from None
    if n < 20:
        raise argparse.ArgumentTypeError(f"size {n} is too small: every protocol needs at least 20 samples")
    return n


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Scaling benchmark of facebench's protocols and metrics against peers "
                                            "(issue 18); writes a Markdown table.")
    p.add_argument("--sizes", nargs="+", type=_size, default=[10**4, 10**5, 10**6], help="n values (1e4 allowed)")
    p.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES), help="what to measure")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of the protocols")
    p.add_argument("--repeats", type=int, default=3, help="calls per measurement below 10^6 (best is kept)")
    p.add_argument("--repeats-large", type=int, default=1, help="calls per measurement from 10^6")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds one measurement may take (then FAIL)")
    p.add_argument("--out", type=Path, help="write the table here (e.g. tests/benchmarks/SCALING.md)")
    p.add_argument("--readme", type=Path, help=f"also write it into this README under {README_HEADING!r}")
    p.add_argument("--child", choices=list(CASES), help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _command(args) -> str:
    sizes = " ".join(f"1e{fmt_n(n)[3:]}" if fmt_n(n).startswith("10^") else str(n) for n in args.sizes)
    cases = "" if args.cases == list(CASES) else " --cases " + " ".join(args.cases)
    return (f"python tests/benchmarks/scaling.py --sizes {sizes}{cases} --resamples {args.resamples} "
            f"--repeats {args.repeats} --repeats-large {args.repeats_large}")


def _progress(r: dict) -> str:
    if "error" in r:
        return f"{r['case']} n={fmt_n(r['n'])}: {r['error']}"
    text = f"{r['case']} n={fmt_n(r['n'])}: {r['seconds']:.3g} s, peak {r['peak_mb']:.0f} MB"
    if r.get("peer_seconds"):
        text += f"; peer {r['peer_seconds']:.3g} s, ratio {ratio(r):.2f}"
    return text + (f" ({r['peer_error']})" if r.get("peer_error") else "")


def run(args) -> tuple[list[dict], dict]:
    """Every (case, n) in its own subprocess, sizes ascending; a case stops growing after a timeout."""
    settings = {"date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
                "commit": commit(), "load_before": os.getloadavg()[0], "command": _command(args),
                "resamples": args.resamples, "repeats": args.repeats, "repeats_large": args.repeats_large}
    results = []
    for case in args.cases:
        for n in sorted(args.sizes):
            r = run_child(case, n, args.resamples, repeats_for(CASES[case], n, args.repeats, args.repeats_large),
                          args.timeout)
            print(_progress(r), flush=True)
            results.append(r)
            if "timed out" in r.get("error", ""):
                break  # a larger n would only time out too
    settings["load_after"] = os.getloadavg()[0]
    return results, settings


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        if args.n is None:
            raise SystemExit("--child needs --n")
        r = measure(args.child, args.n, args.resamples, args.repeats)
        print(RESULT_TAG + json.dumps(r), flush=True)
        return 0
    results, settings = run(args)
    body = render(results, settings)
    print("\n" + body)
    if args.out:
        args.out.write_text("# Scaling benchmark (issue 18)\n\n" + body)
    if args.readme:
        write_readme(args.readme, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
