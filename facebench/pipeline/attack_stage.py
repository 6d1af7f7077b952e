"""Attacked splits in the execute step: adversarial inputs made with the model, their predictions stored.

A split whose ``dataset_args`` hold ``attack`` (``facebench.data.attack_spec``) is the clean split's samples
perturbed by that attack. White-box attacks need the model, so this stage runs in ``execute``, with the model
under test (or the spec's ``surrogate``), and writes the model under test's outputs on the adversarial inputs
to the prediction store. The store key is the usual one (model fingerprint, input spec, dataset fingerprint)
where the dataset's content tag adds the normalised attack spec, the attacked head, the attacking model's
fingerprint and (uap) the fit split's fingerprint; so ``facebench rescore`` (a ``StoredModel``) reads them
back and no model is loaded. A surrogate's fingerprint is kept in a small pointer file under
``<store>/attacks/pointers`` (keyed by the spec, the model under test and the split), so a rescore finds it
without building the surrogate.

A universal perturbation is cached under ``<store>/attacks/<key>/`` (``perturbation.npy``, ``meta.json``),
keyed by the attacking model's fingerprint and input spec, the fit split's fingerprint (and pair list), the spec
and the head (none for verification pairs):
fitted once, reused by every split it is evaluated on. Its summary (norms, fit history, a picture of it:
``128 + 127 * v / eps`` as uint8, at most 64 px a side) goes into the stored predictions' ``meta["attack"]``,
where the ``adversarial`` protocol reads it.

Limits: attacks and the predictions on their inputs run in float32 on one process (the ``amp`` setting only
keys the entry; under ``torchrun`` every rank would attack the whole split). A split read for features (the
verification form of the ``adversarial`` protocol) gives one row per pair: the features of its attacked probe.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Callable

import numpy as np
import torch

from facebench.data.attack_spec import PAIR_FEATURES, fit_ref, pair_ids, parse_attack
from facebench.engine.progress import progress_bar
from facebench.engine.transfer import frame_batches, same_frame, to_frame, transferred
from facebench.errors import ConfigError, ModelError, did_you_mean
from facebench.fingerprint import hash_object

PICTURE_SIDE = 64


# --------------------------------------------------------------------------- checks (plan time)
def check_attack_models(spec: dict, model=None) -> None:
    """Before anything runs: a named surrogate is a registered differentiable model; else ``model`` (a
    registered name, a model class or a built adapter; None: not known yet) must be differentiable. A model
    that only replays stored outputs (``store_only``: ``facebench rescore``) passes: it reads the attacked
    split's stored predictions and computes nothing."""
    from facebench.engine.attacks import require_differentiable
    from facebench.registry import MODELS

    name = f"the {spec['kind']} attack"
    if spec.get("surrogate") is not None:
        surrogate = spec["surrogate"]["model"]
        if surrogate not in MODELS.names():
            raise ConfigError(f"attack surrogate {surrogate!r} is not a registered model."
                              f"{did_you_mean(surrogate, MODELS.names())}")
        require_differentiable(MODELS.get(surrogate), f"{name} (surrogate {surrogate})")
        _check_declared_frames(MODELS.get(surrogate), model, surrogate)
        return
    if model is None:
        return
    if isinstance(model, str):
        model = MODELS.get(model)
    if not getattr(model, "store_only", False):
        require_differentiable(model, name)


def _check_declared_frames(surrogate_cls, model, surrogate: str) -> None:
    """The frames of a surrogate and the model under test, when both declare their input spec without being
    built (a class attribute), checked now (``engine.transfer.check_frames``); otherwise when built."""
    from facebench.data.preprocess import InputSpec
    from facebench.engine.transfer import check_frames
    from facebench.registry import MODELS

    if isinstance(model, str):
        model = MODELS.get(model)
    mine, theirs = getattr(surrogate_cls, "input_spec", None), getattr(model, "input_spec", None)
    if isinstance(mine, InputSpec) and isinstance(theirs, InputSpec):
        check_frames(mine, theirs, surrogate, getattr(model, "name", "the model under test"))


def check_planned_attacks(planned, adapter) -> None:
    """Every attacked split of the runnable tasks against the built model (``check_attack_models``)."""
    for item in planned:
        if item.status != "ok":
            continue
        for ref, _ in item.splits():
            if "attack" in ref.dataset_args:
                try:
                    check_attack_models(parse_attack(ref.dataset_args["attack"]), adapter)
                except ConfigError as err:
                    raise ConfigError(f"task {item.task.name!r}: {err}") from None


# --------------------------------------------------------------------------- pixels
def uint8_batches(dataset, spec, batch_size: int):
    """The engine's uint8 (B, C, H, W) batches of ``dataset`` at the input spec ``spec``, in sample order."""
    from torch.utils.data import DataLoader

    from facebench.data.preprocess import PreparedImages

    yield from DataLoader(PreparedImages(dataset.images, spec), batch_size=batch_size, shuffle=False, num_workers=0)


def normalised(x01: torch.Tensor, spec) -> torch.Tensor:
    """Float pixels in [0, 1] -> the model's input, as ``engine.attacks.adapter_function`` normalises."""
    from facebench.data.preprocess import pixel_divisor

    pixels, divisor = x01 * 255.0, pixel_divisor(spec.scale)
    scaled = pixels * spec.scale if divisor is None else pixels / divisor
    mean = torch.tensor(spec.mean, dtype=x01.dtype, device=x01.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=x01.dtype, device=x01.device).view(1, -1, 1, 1)
    return (scaled - mean) / std


def predict_float(adapter, x01: torch.Tensor, head: str) -> dict[str, np.ndarray]:
    """The model's stored outputs (the head and its ``head_outputs``) on float inputs (no uint8 rounding)."""
    out = adapter.predict(normalised(x01, adapter.input_spec), heads=(head,), features=False)
    names = [head, *getattr(adapter, "head_outputs", ())]
    return {name: out[name].detach().float().cpu().numpy() for name in names}


def head_labels(dataset, adapter, head: str, clean: np.ndarray) -> np.ndarray:
    """Ground-truth classes as indices of ``head``'s labels (by name); the clean prediction where the head lacks
    the sample's class or the split has no labels."""
    labels = list(adapter.heads[head].labels)
    if dataset.labels is None:
        return clean.copy()
    index = {c: i for i, c in enumerate(labels)}
    return np.array([index.get(c, p) for c, p in zip(dataset.labels.tolist(), clean.tolist())], dtype=np.int64)


# --------------------------------------------------------------------------- the stage
@dataclasses.dataclass
class AttackRun:
    """What the stage needs: the store, the engine's settings, the run's SplitWork (the fit splits) and a log."""

    store: object
    settings: object
    work: dict
    log: Callable[[str], None]


def attacked_split(unit, adapter, run: AttackRun):
    """Fill ``unit`` (an attacked split): ``dataset`` tagged with the attack, ``preds`` and ``report`` from the
    store, or computed with the model and stored. With ``rows: pairs`` (verification) its rows are its pairs'
    attacked probes (``facebench.pipeline.attack_pairs``), else the attacked head's outputs per sample."""
    from facebench.engine.inference import InferenceReport, prediction_key
    from facebench.pipeline import attack_pairs

    start = time.perf_counter()
    spec = parse_attack(unit.ref.dataset_args["attack"])
    if spec["rows"] == "pairs":
        attack_pairs.check_pairs(unit.dataset, spec)
        head, outputs, rows = None, [PAIR_FEATURES], pair_ids(unit.dataset)
    elif unit.features:
        raise ConfigError(f"{unit.ref.dataset}/{unit.ref.split}: an attack with rows: samples gives head outputs, "
                          f"not features; attacks on embeddings use rows: pairs (the adversarial protocol's "
                          f"inner: verification).")
    else:
        head = _single_head(unit, adapter)
        outputs, rows = [head, *getattr(adapter, "head_outputs", ())], unit.dataset.ids
    attacker = _Attacker(spec, adapter, run, unit)
    fit = _fit_dataset(spec, run.work)
    tag = {"spec": spec, "head": head, "attacker": attacker.fingerprint(),
           "fit": None if fit is None else fit.fingerprint() + (fit.pairs_fingerprint() or "")}
    if head is None:
        tag["pairs"] = unit.dataset.pairs_fingerprint()
    if spec["surrogate"] is not None:
        from facebench.engine.transfer import VERSION

        tag["frame_mapping"] = VERSION
    dataset = dataclasses.replace(unit.dataset, content_tag={**unit.dataset.content_tag, "attack": tag})
    key = prediction_key(adapter, dataset, run.store, run.settings.amp)
    if run.store.has(key, outputs):
        preds = run.store.load(key).align(rows)
        run.log(f"{dataset.name}/{dataset.split}: reused stored predictions under the {spec['kind']} attack ({key})")
        return dataset, preds, InferenceReport(key, True, 0, 0, time.perf_counter() - start, "store")
    if getattr(adapter, "store_only", False):
        raise ModelError(f"no stored predictions of {adapter.name} on {dataset.name}/{dataset.split} under the "
                         f"{spec['kind']} attack in {run.store.root} (key {key}). `facebench rescore` only reads "
                         f"what is stored; compute them with `facebench run SUITE --model {adapter.name}`.")
    preds, summary, device = attacker.run(dataset, fit, head, rows)
    attacker.remember()
    meta = {"model": adapter.name, "model_fingerprint": adapter.fingerprint(), "dataset": dataset.name,
            "split": dataset.split, "dataset_fingerprint": dataset.fingerprint(),
            "preprocess_fingerprint": adapter.input_spec.fingerprint(),
            "heads": {} if head is None else {head: list(adapter.heads[head].labels)}, "attack": summary,
            "rows": "pairs (the first image attacked)" if head is None else "samples"}
    run.store.save(key, preds, meta)
    preds = run.store.load(key).align(rows)
    return dataset, preds, InferenceReport(key, False, 0, len(rows), time.perf_counter() - start, device)


def _single_head(unit, adapter) -> str:
    heads = sorted(unit.heads)
    if len(heads) != 1:
        raise ConfigError(f"{unit.ref.dataset}/{unit.ref.split}: an attacked split attacks one head, but the tasks "
                          f"reading it ask for {heads or 'none'}; give each head's tasks their own attack spec.")
    if adapter.heads[heads[0]].kind != "classification":
        raise ConfigError(f"attacks run on classification heads; head {heads[0]!r} of {adapter.name} is "
                          f"{adapter.heads[heads[0]].kind}.")
    return heads[0]


def _fit_dataset(spec: dict, work: dict):
    """The uap fit split as screened by the plan (a seeded random subset of ``limit`` samples; with ``rows:
    pairs`` the pairs of the spec's goal, genuine or impostor, and ``limit`` of those), else None."""
    ref = fit_ref(spec)
    if ref is None:
        return None
    unit = work.get(ref.key())
    if unit is None:
        raise ConfigError(f"the uap fit split {ref.dataset}/{ref.split} was not planned: name it in the "
                          f"protocol's requires() (the adversarial protocol does).")
    limit, ds = spec["fit"]["limit"], unit.dataset
    if spec["rows"] == "pairs" and ds.pairs is not None:  # the goal's pairs: genuine (dodging) or impostor
        keep = np.flatnonzero(ds.pairs["same"].astype(bool) == (spec["goal"] == "dodging"))
        ds = dataclasses.replace(ds, pairs={k: np.asarray(v)[keep] for k, v in ds.pairs.items()})
    n = len(ds) if ds.pairs is None else len(ds.pairs["a"])
    if limit is None or limit >= n:
        return ds
    pick = np.sort(np.random.default_rng([spec["seed"], n]).choice(n, size=limit, replace=False))
    if ds.pairs is None:
        return ds.subset(pick)
    return dataclasses.replace(ds, pairs={k: np.asarray(v)[pick] for k, v in ds.pairs.items()})


class _Attacker:
    """The model that computes the perturbation: the model under test, or the spec's surrogate (built here,
    or for a store-only model its fingerprint read from the pointer file)."""

    def __init__(self, spec: dict, adapter, run: AttackRun, unit):
        self.spec, self.target, self.ctx, self.unit = spec, adapter, run, unit
        self.model = adapter if spec["surrogate"] is None else None
        self._fp = None

    def _pointer(self):
        ident = hash_object({"spec": self.spec, "target": self.target.fingerprint(), "split": self.unit.ref.key(),
                             "data": self.unit.dataset.fingerprint()}, length=24)
        return self.ctx.store.root / "attacks" / "pointers" / f"{ident}.json"

    def fingerprint(self) -> str:
        if self._fp is not None:
            return self._fp
        if self.model is None and getattr(self.target, "store_only", False):
            path = self._pointer()
            if not path.is_file():
                raise ModelError(f"no stored transfer attack from surrogate {self.spec['surrogate']['model']} on "
                                 f"{self.unit.ref.dataset}/{self.unit.ref.split} in {self.ctx.store.root}; compute it "
                                 f"with `facebench run`.")
            self._fp = json.loads(path.read_text())["attacker_fingerprint"]
            return self._fp
        self._fp = self.built().fingerprint()
        return self._fp

    def built(self):
        if self.model is None:
            from facebench.runner import make_model

            from facebench.engine.transfer import check_frames

            sur = self.spec["surrogate"]
            self.model = make_model(sur["model"], sur["args"])
            check_frames(self.model.input_spec, self.target.input_spec, sur["model"], self.target.name)
        return self.model

    def remember(self) -> None:
        if self.spec["surrogate"] is not None:
            from facebench.atomic import atomic_write_bytes

            atomic_write_bytes(self._pointer(), json.dumps({"attacker_fingerprint": self.fingerprint(),
                                                            "surrogate": self.spec["surrogate"]}).encode())

    def run(self, dataset, fit, head: str | None, rows: np.ndarray):
        """(Predictions of the model under test on the attacked inputs, summary, device name); ``head`` None:
        the features of each pair's attacked probe (``rows``: the pair ids)."""
        from facebench.engine.device import select_device
        from facebench.engine.store import Predictions
        from facebench.pipeline.attack_pairs import attack_pairs

        device = select_device(self.ctx.settings.device)
        model = self.built().to(device).eval()
        self.target.to(device).eval()
        t0 = time.perf_counter()
        bar = progress_bar(len(rows), f"{self.spec['kind']} attack (eps {self.spec['eps'] * 255:.4g}/255) on "
                           f"{dataset.name}/{dataset.split}", self.ctx.settings.progress,
                           unit="pair" if head is None else "img")
        if head is None:
            v, summary = (universal_perturbation(self.spec, model, fit, head, device, self.ctx)
                          if self.spec["kind"] == "uap" else (None, {}))
            outs = attack_pairs(self.spec, model, self.target, dataset, device, v, bar.update)
        elif self.spec["kind"] == "uap":
            v, summary = universal_perturbation(self.spec, model, fit, head, device, self.ctx)
            v = to_frame(v, model.input_spec, self.target.input_spec, self.spec["norm"])
            outs = _perturbed_outputs(self.target, dataset, head, device, lambda x, idx: (x + v).clamp(0, 1),
                                      self.spec["batch_size"], bar.update)
        else:
            attack = per_sample_attack(self.spec, model, dataset, head)
            outs = _perturbed_outputs(self.target, dataset, head, device, attack, self.spec["batch_size"], bar.update,
                                      source=model.input_spec, norm=self.spec["norm"])
            summary = {}
        if not same_frame(model.input_spec, self.target.input_spec):
            summary["frame"] = {"attacked": list(model.input_spec.size) + [model.input_spec.channels],
                                "target": list(self.target.input_spec.size) + [self.target.input_spec.channels],
                                "mapping": "bilinear resize; channels by the grey formula or repeated "
                                           "(facebench.engine.transfer)"}
        bar.close()
        summary.update(kind=self.spec["kind"], attacker=self.built().name, seconds=round(time.perf_counter() - t0, 3),
                       n=len(rows))
        what = "samples" if head is not None else "pairs (first image)"
        self.ctx.log(f"{dataset.name}/{dataset.split}: {self.spec['kind']} attack at eps {self.spec['eps']:.5g} on "
                     f"{len(rows)} {what} in {summary['seconds']:.1f} s ({device})")
        return Predictions(rows, outs), summary, str(device)


def _perturbed_outputs(target, dataset, head: str, device, perturb: Callable, batch_size: int,
                       done: Callable[[int], None] = lambda n: None, source=None, norm: str = "linf") -> dict:
    """The target's outputs on ``perturb(x01, sample indices)`` of each chunk of ``batch_size`` samples
    (``done(n)`` after each chunk: progress). ``source``: the input spec ``perturb`` works in (a surrogate's),
    its perturbation carried to the target's frame (``facebench.engine.transfer``); default the target's."""
    source = source or target.input_spec
    parts, start = [], 0
    for us, ut in frame_batches(dataset, source, target.input_spec, batch_size):
        xs = us.to(device).float() / 255.0
        xt = xs if ut is us else ut.to(device).float() / 255.0
        idx = np.arange(start, start + len(us))
        x_adv = transferred(perturb(xs, idx).detach(), xs, xt, source, target.input_spec, norm)
        parts.append(predict_float(target, x_adv, head))
        start += len(us)
        done(len(us))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def per_sample_attack(spec: dict, model, dataset, head: str) -> Callable:
    """``perturb(x01, idx)`` for fgsm / pgd on ``model``'s head: each chunk attacked with its own seed
    ``(seed, first sample index)`` (the chunks are ``batch_size`` samples from the start, in order)."""
    from facebench.engine.attacks import adapter_function, cross_entropy_objective, fgsm, pgd

    logits_fn = adapter_function(model, head, attack_name=f"the {spec['kind']} attack")

    def perturb(x01: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            clean = logits_fn(x01).argmax(dim=1).cpu().numpy()
        labels = clean if spec["labels"] == "predicted" else head_labels(dataset.subset(idx), model, head, clean)
        objective = cross_entropy_objective(logits_fn, torch.from_numpy(labels))
        if spec["eps"] == 0:
            return x01
        if spec["kind"] == "fgsm":
            return fgsm(objective, x01, eps=spec["eps"], norm=spec["norm"])
        seed = int(np.random.SeedSequence([spec["seed"], int(idx[0])]).generate_state(1)[0])
        return pgd(objective, x01, norm=spec["norm"], eps=spec["eps"], alpha=spec["step_size"],
                   steps=spec["steps"], random_start=spec["random_start"], seed=seed)

    return perturb


def universal_perturbation(spec: dict, model, fit, head: str | None, device, run: AttackRun):
    """(v (C, H, W) on ``device``, summary): read from ``<store>/attacks/<key>`` or fitted on ``fit`` and kept."""
    key = hash_object({"attacker": model.fingerprint(), "input": model.input_spec.fingerprint(),
                       "fit": fit.fingerprint() + (fit.pairs_fingerprint() or ""), "spec": {k: v for k, v in spec.items() if k != "batch_size"},
                       "head": head}, length=24)
    folder = run.store.root / "attacks" / key
    if (folder / "perturbation.npy").is_file() and (folder / "meta.json").is_file():
        v = torch.from_numpy(np.load(folder / "perturbation.npy")).to(device)
        summary = json.loads((folder / "meta.json").read_text())
        run.log(f"reused the universal perturbation {key} fitted on {fit.name}/{fit.split}")
        return v, {**summary, "reused": True}
    t0 = time.perf_counter()
    if head is None:
        from facebench.pipeline.attack_pairs import fit_pairs_uap

        result = fit_pairs_uap(spec, model, fit, device, run.log)
    else:
        result = _fit_uap(spec, model, fit, head, device, run.log)
    v = result.perturbation.float()
    summary = {"perturbation_key": key, "method": spec["method"], "norm": spec["norm"], "eps": spec["eps"],
               "fit": {"dataset": fit.name, "split": fit.split, "n": len(fit), "fingerprint": fit.fingerprint(),
                       **({} if head is not None else {"goal": spec["goal"], "pairs": int(len(fit.pairs["a"]))})},
               "linf": float(v.abs().max()), "l2": float(v.norm()), "history": result.history,
               "fit_seconds": round(time.perf_counter() - t0, 3), "picture": perturbation_picture(v, spec["eps"])}
    from facebench.atomic import atomic_write_bytes

    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "perturbation.npy", v.cpu().numpy())
    atomic_write_bytes(folder / "meta.json", json.dumps(summary).encode())
    return v.to(device), {**summary, "reused": False}


def _fit_uap(spec: dict, model, fit, head: str, device, log: Callable[[str], None]):
    """The fit split's pixels on the device, then SGA or DeepFool-UAP on ``model``'s head."""
    from facebench.engine.attacks import adapter_function
    from facebench.engine.uap import clean_label_objective, deepfool_uap, sga_uap

    X = torch.cat(list(uint8_batches(fit, model.input_spec, 256))).to(device)
    logits_fn = adapter_function(model, head, attack_name=f"the uap attack ({spec['method']})")
    log(f"fitting a universal perturbation ({spec['method']}, eps {spec['eps']:.5g}) on {len(fit)} samples of "
        f"{fit.name}/{fit.split}")
    progress = lambda entry: log(f"  uap {spec['method']}: {entry}")  # noqa: E731
    if spec["method"] == "sga":
        objective = clean_label_objective(logits_fn, X, spec["loss"], spec["beta"], spec["batch_size"])
        return sga_uap(objective, X, eps=spec["eps"], epochs=spec["epochs"], batch_size=spec["sga_batch_size"],
                       minibatch=spec["minibatch"], inner_iters=spec["inner_iters"], step_decay=spec["step_decay"],
                       max_iterations=spec["max_iterations"], progress=progress, seed=spec["seed"])
    return deepfool_uap(logits_fn, X, xi=spec["eps"], p="inf" if spec["norm"] == "linf" else 2, delta=spec["delta"],
                        max_passes=spec["max_passes"], overshoot=spec["overshoot"], max_iter_df=spec["max_iter_df"],
                        num_classes=spec["num_classes"], batch_size=spec["batch_size"],
                        max_iterations=spec["max_iterations"], progress=progress, seed=spec["seed"])


def perturbation_picture(v: torch.Tensor, eps: float) -> list:
    """A picture of ``v`` (C, H, W): ``128 + 127 * v / max|v|`` as uint8 (H, W) or (H, W, C), every k-th pixel so
    that no side exceeds :data:`PICTURE_SIDE` (grey = no change)."""
    arr = v.detach().float().cpu().numpy()
    scale = float(np.abs(arr).max()) or float(eps) or 1.0
    step = max(1, int(np.ceil(max(arr.shape[1:]) / PICTURE_SIDE)))
    img = np.clip(np.rint(128 + 127 * arr[:, ::step, ::step] / scale), 0, 255).astype(np.uint8)
    img = img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))
    return img.tolist()
