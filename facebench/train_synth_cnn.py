"""Train the reference SynthCNN on the embedded synthetic face set.

    python -m facebench.train_synth_cnn [--out PATH] [--seed 0] [--epochs N] [--n-train N]

A tool beside ``cli`` and ``api``: it joins two layers that must not import each other -- the synthetic
generator (``facebench.synth``, NumPy only) and the network (``facebench.models``) -- so it lives above
both (it was ``facebench/synth/train.py``; see ``tests/test_import_arrows.py``).

Renders ``render_split("train", n_train, seed=seed)`` (clean, imbalance 4), trains
SynthCNN on CPU with a fixed thread count and deterministic ops, saves the state_dict to
``facebench/models/weights/synth_cnn.pt`` and reports accuracy, mean class accuracy and
per-class recall on ``render_split("test", 2000, seed=0)``, the split the demo evaluates.
The same arguments on the same software versions give the same weights.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from facebench.models.synth_cnn_net import SynthCNN, preprocess_uint8
from facebench.synth.generator import BASIC_EXPRESSIONS, GENERATOR_VERSION, render_split

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "models" / "weights" / "synth_cnn.pt"
TEST_SPLIT = {"split": "test", "n": 2000, "seed": 0}  # the split the demo evaluates

DEFAULTS = {
    "seed": 0,
    "epochs": 8,
    "n_train": 12000,
    "batch_size": 64,
    "lr": 3e-3,
    "weight_decay": 1e-4,
    "width": 16,
    "threads": 2,
}


def _set_determinism(seed: int, threads: int) -> None:
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Class-index predictions for uint8 (N, H, W, 3) images."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = preprocess_uint8(images[start : start + batch_size])
        out.append(model(x).argmax(dim=1).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def summarise(pred: np.ndarray, labels: np.ndarray, names=BASIC_EXPRESSIONS) -> dict:
    """Accuracy, mean class accuracy and per-class recall of class-index predictions."""
    y = np.array([names.index(str(c)) for c in labels])
    recall = {}
    for k, name in enumerate(names):
        mask = y == k
        recall[name] = float((pred[mask] == k).mean()) if mask.any() else float("nan")
    present = [r for r in recall.values() if not np.isnan(r)]
    return {
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "mean_class_accuracy": float(np.mean(present)) if present else float("nan"),
        "recall": recall,
    }


def load_model(path: str | Path = DEFAULT_WEIGHTS) -> SynthCNN:
    """SynthCNN with the saved weights, in eval mode."""
    model = SynthCNN(n_classes=len(BASIC_EXPRESSIONS))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def train(
    *,
    seed: int = DEFAULTS["seed"],
    epochs: int = DEFAULTS["epochs"],
    n_train: int = DEFAULTS["n_train"],
    batch_size: int = DEFAULTS["batch_size"],
    lr: float = DEFAULTS["lr"],
    weight_decay: float = DEFAULTS["weight_decay"],
    width: int = DEFAULTS["width"],
    threads: int = DEFAULTS["threads"],
    log=print,
) -> SynthCNN:
    """Train SynthCNN on the synthetic training split and return it in eval mode.

    Torch's global RNG, thread count and deterministic-algorithms flag are restored on
    return, so calling this from a library or a test leaves the process as it was.
    """
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        with torch.random.fork_rng(devices=[]):
            _set_determinism(seed, threads)
            return _train(
                seed=seed,
                epochs=epochs,
                n_train=n_train,
                batch_size=batch_size,
                lr=lr,
                weight_decay=weight_decay,
                width=width,
                log=log,
            )
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)


def _train(*, seed, epochs, n_train, batch_size, lr, weight_decay, width, log) -> SynthCNN:
    t0 = time.perf_counter()
    data = render_split("train", n_train, seed=seed)
    x_all = preprocess_uint8(data.images)
    y_all = torch.as_tensor(np.array([BASIC_EXPRESSIONS.index(str(c)) for c in data.labels]))
    log(f"rendered {n_train} training images in {time.perf_counter() - t0:.1f}s")

    model = SynthCNN(n_classes=len(BASIC_EXPRESSIONS), width=width)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = -(-n_train // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=max(1, epochs * steps_per_epoch), pct_start=0.2
    )
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        t_ep = time.perf_counter()
        order = torch.randperm(n_train, generator=gen)
        flips = torch.rand(n_train, generator=gen) < 0.5  # expressions are mirror-symmetric
        total, correct, loss_sum = 0, 0, 0.0
        for start in range(0, n_train, batch_size):
            idx = order[start : start + batch_size]
            x = x_all[idx]
            f = flips[start : start + batch_size]
            x = torch.where(f[:, None, None, None], x.flip(3), x)
            y = y_all[idx]
            logits = model(x)
            loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            total += len(idx)
        log(
            f"epoch {epoch + 1}/{epochs}: loss {loss_sum / total:.4f}  "
            f"train acc {correct / total:.4f}  ({time.perf_counter() - t_ep:.1f}s)"
        )
    return model.eval()


def save_weights(model: nn.Module, path: str | Path) -> int:
    """Save the state_dict (contiguous CPU tensors); returns the file size in bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    torch.save(state, str(path))
    return path.stat().st_size


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m facebench.train_synth_cnn",
        description="Train the reference SynthCNN on the synthetic face set (CPU, deterministic).",
    )
    parser.add_argument("--out", default=str(DEFAULT_WEIGHTS), help="where to write the state_dict (.pt)")
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="training seed (data and init)")
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    parser.add_argument("--n-train", type=int, default=DEFAULTS["n_train"], help="training images to render")
    parser.add_argument("--threads", type=int, default=DEFAULTS["threads"], help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.n_train < 1 or args.threads < 1:
        parser.error("--epochs, --n-train and --threads must be >= 1")

    print(f"facebench synth generator v{GENERATOR_VERSION}; torch {torch.__version__}; {args.threads} threads")
    t0 = time.perf_counter()
    model = train(seed=args.seed, epochs=args.epochs, n_train=args.n_train, threads=args.threads)
    train_s = time.perf_counter() - t0
    size = save_weights(model, args.out)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"trained in {train_s:.1f}s; {n_params} parameters; wrote {args.out} ({size / 1024:.1f} KiB)")

    test = render_split(TEST_SPLIT["split"], TEST_SPLIT["n"], seed=TEST_SPLIT["seed"])
    stats = summarise(predict(model, test.images), test.labels)
    print(f"test accuracy {stats['accuracy']:.4f}  mean class accuracy {stats['mean_class_accuracy']:.4f}")
    counts = {c: int((test.labels == c).sum()) for c in BASIC_EXPRESSIONS}
    for name, r in stats["recall"].items():
        print(f"  recall {name:<10s} {r:.4f}  (n={counts[name]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
