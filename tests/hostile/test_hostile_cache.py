"""Hostile cache folders and exit codes (issue 16, item 6): corrupt prediction-store entries, shards
and decoded-image entries; cache folders that cannot be written; every task skipped.

Each case also says whether facebench must report one ``CacheWarning`` (``warning``: a fragment of
it) or none. Cases that corrupt an entry first run the mini suite once (setup) to fill the cache."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facebench.cli import main
from facebench.errors import CacheWarning
from tests.hostile._harness import MINI_SUITE, Case, check_case, write

RUN_FLAGS = ["--model", "synth-cnn", "--no-progress", "--quiet", "--no-figures"]
RUN_MAY_CHANGE = ("cache", "out")

IMAGE_SUITE = """\
name: faces
defaults: {batch_size: 16, bootstrap: 20, shard_size: 16}
tasks:
  - {name: clean, dataset: imagefolder, path: faces, split: test, protocol: closed_set}
"""


@dataclass(repr=False)
class CacheCase(Case):
    warning: str = ""  # a fragment of the one CacheWarning expected ('' = none)


# -- setups -----------------------------------------------------------------------------------------

def _run_argv(tmp: Path, suite: Path, out: str = "out", *extra: str) -> list[str]:
    return ["run", str(suite), *RUN_FLAGS, "--out", str(tmp / out), *extra]


def _quietly(argv: list[str]) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return main(argv)


def _mini(tmp: Path) -> Path:
    return write(tmp / "mini.yaml", MINI_SUITE)


def _faces(tmp: Path) -> Path:
    rng = np.random.default_rng(0)
    for c, cls in enumerate(("angry", "happy", "neutral")):
        for i in range(4):
            path = tmp / "faces" / "test" / cls / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (36 + i, 40, 3), dtype=np.uint8)).save(path)
    return write(tmp / "faces.yaml", IMAGE_SUITE.replace("path: faces", f"path: {tmp / 'faces'}"))


def _filled(tmp: Path, suite: Path) -> Path:
    """Run ``suite`` once into ``first`` (fills the cache); returns the one prediction entry."""
    assert _quietly(_run_argv(tmp, suite, "first")) == 0
    (entry,) = (tmp / "cache" / "predictions").iterdir()
    return entry


def _flip(path: Path, at: float = 0.6) -> None:
    raw = bytearray(path.read_bytes())
    raw[int(len(raw) * at)] ^= 0xFF
    path.write_bytes(bytes(raw))


def store_case(corrupt):
    """Fill the cache with the mini suite, ``corrupt(entry_dir)``, run again."""
    def setup(tmp: Path) -> list[str]:
        suite = _mini(tmp)
        corrupt(_filled(tmp, suite))
        return _run_argv(tmp, suite)
    return setup


def decoded_case(corrupt):
    """Fill the caches with the image suite, drop the predictions (the next run reads the decoded
    entry), ``corrupt(decoded_entry_dir)``, run again."""
    def setup(tmp: Path) -> list[str]:
        suite = _faces(tmp)
        _filled(tmp, suite)
        shutil.rmtree(tmp / "cache" / "predictions")
        (entry,) = [p for p in (tmp / "cache" / "decoded").iterdir() if not p.name.startswith(".")]
        corrupt(entry)
        return _run_argv(tmp, suite)
    return setup


def _other_valid_npz(entry: Path) -> None:
    path = entry / "predictions.npz"
    with np.load(path) as data:
        arrays = {k: (data[k] + 1 if data[k].dtype.kind == "f" else data[k]) for k in data.files}
    np.savez(path, **arrays)


def _edit_meta(entry: Path, **changes) -> None:
    meta = json.loads((entry / "meta.json").read_text())
    (entry / "meta.json").write_text(json.dumps({**meta, **changes}))


def _partial_with(bad_shard):
    """A partial entry: the complete files removed, shards of a previous run left, one of them bad."""
    def corrupt(entry: Path) -> None:
        (entry / "predictions.npz").unlink()
        (entry / "meta.json").unlink()
        shards = entry / "shards"
        shards.mkdir()
        bad_shard(shards / "shard-000000.npz")
    return corrupt


def _tampered_shard(path: Path) -> None:
    from facebench.engine.store import PredictionStore

    store = PredictionStore(path.parents[3])
    store.write_shard(path.parents[1].name, 0, np.array(["synth-0"]), {"expression": np.zeros((1, 7), np.float32)})
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["out__expression"] = arrays["out__expression"] + 5  # valid npz, stale checksum
    np.savez(path, **arrays)


def file_in_place(rel: str, suite_maker=_mini, extra=()):
    """A regular file where the cache (or one of its folders) should be."""
    def setup(tmp: Path) -> list[str]:
        suite = suite_maker(tmp)
        write(tmp / rel, "the user's own file\n")
        return _run_argv(tmp, suite, "out", *extra)
    return setup


def rescore_case(prepare):
    def setup(tmp: Path) -> list[str]:
        suite = _mini(tmp)
        entry = _filled(tmp, suite)
        return ["rescore", str(tmp / "first"), "--out", str(tmp / "out"), "--no-figures", "--quiet",
                *prepare(tmp, entry)]
    return setup


def cache_cmd(action: str, prepare):
    def setup(tmp: Path) -> list[str]:
        prepare(tmp)
        return ["cache", action]
    return setup


def skipped_suite(tasks: str, *extra: str):
    def setup(tmp: Path) -> list[str]:
        suite = write(tmp / "s.yaml", "name: s\ndefaults: {bootstrap: 20, missing_data: skip}\ntasks:\n"
                      + tasks.replace("ABSENT", str(tmp / "absent")))
        return _run_argv(tmp, suite, "out", *extra)
    return setup


SYNTH_TASK = "  - {name: ok, dataset: synth, split: test, protocol: closed_set, dataset_args: {n: 120}}\n"
ABSENT_TASK = "  - {name: NAME, dataset: imagefolder, path: ABSENT, split: test, protocol: closed_set}\n"
CORRUPT = "is corrupt"
UNUSABLE = "cannot be used"

CASES = [
    # complete prediction entries: detected, reported once, recomputed; the run succeeds
    CacheCase("store-npz-byte-flipped", store_case(lambda e: _flip(e / "predictions.npz")), 0, "wrote",
              RUN_MAY_CHANGE, CORRUPT),
    CacheCase("store-npz-truncated", store_case(lambda e: (e / "predictions.npz").write_bytes(
        (e / "predictions.npz").read_bytes()[:200])), 0, "wrote", RUN_MAY_CHANGE, CORRUPT),
    CacheCase("store-npz-zero-bytes", store_case(lambda e: (e / "predictions.npz").write_bytes(b"")), 0, "wrote",
              RUN_MAY_CHANGE, CORRUPT),
    CacheCase("store-npz-not-a-zip", store_case(lambda e: (e / "predictions.npz").write_text("<html>")), 0,
              "wrote", RUN_MAY_CHANGE, CORRUPT),
    CacheCase("store-npz-bytes-appended", store_case(lambda e: (e / "predictions.npz").write_bytes(
        (e / "predictions.npz").read_bytes() + b"\0")), 0, "wrote", RUN_MAY_CHANGE, "bytes, meta.json says"),
    CacheCase("store-npz-other-valid-file", store_case(_other_valid_npz), 0, "wrote", RUN_MAY_CHANGE,
              "does not match the checksum"),
    CacheCase("store-meta-checksum-edited", store_case(lambda e: _edit_meta(e, checksum="blake2b:0")), 0, "wrote",
              RUN_MAY_CHANGE, "does not match the checksum"),
    CacheCase("store-meta-size-edited", store_case(lambda e: _edit_meta(e, bytes=1)), 0, "wrote",
              RUN_MAY_CHANGE, CORRUPT),
    CacheCase("store-meta-not-json", store_case(lambda e: (e / "meta.json").write_text("{oops")), 0, "wrote",
              RUN_MAY_CHANGE, "not a readable JSON object"),
    CacheCase("store-meta-is-a-list", store_case(lambda e: (e / "meta.json").write_text("[1, 2]")), 0, "wrote",
              RUN_MAY_CHANGE, "not a readable JSON object"),
    CacheCase("store-meta-deleted", store_case(lambda e: (e / "meta.json").unlink()), 0, "wrote", RUN_MAY_CHANGE),
    CacheCase("store-npz-deleted", store_case(lambda e: (e / "predictions.npz").unlink()), 0, "wrote",
              RUN_MAY_CHANGE),
    # partial entries: a bad shard costs its samples only, silently
    CacheCase("store-shard-garbage", store_case(_partial_with(lambda p: p.write_bytes(b"PK\x03\x04junk"))), 0,
              "wrote", RUN_MAY_CHANGE),
    CacheCase("store-shard-empty", store_case(_partial_with(lambda p: p.write_bytes(b""))), 0, "wrote",
              RUN_MAY_CHANGE),
    CacheCase("store-shard-stale-checksum", store_case(_partial_with(_tampered_shard)), 0, "wrote",
              RUN_MAY_CHANGE),
    # decoded-image entries
    CacheCase("decoded-images-byte-flipped", decoded_case(lambda e: _flip(e / "images.npy", 0.9)), 0, "wrote",
              RUN_MAY_CHANGE, "decoded-image cache entry"),
    CacheCase("decoded-images-truncated", decoded_case(lambda e: (e / "images.npy").write_bytes(
        (e / "images.npy").read_bytes()[:1000])), 0, "wrote", RUN_MAY_CHANGE, "decoded-image cache entry"),
    CacheCase("decoded-images-zero-bytes", decoded_case(lambda e: (e / "images.npy").write_bytes(b"")), 0, "wrote",
              RUN_MAY_CHANGE, "decoded-image cache entry"),
    CacheCase("decoded-meta-not-json", decoded_case(lambda e: (e / "meta.json").write_text("{")), 0, "wrote",
              RUN_MAY_CHANGE),
    # cache folders that cannot be written: one warning, the run completes, the user's file untouched
    CacheCase("cache-root-is-a-file", file_in_place("cache"), 0, "wrote", ("out",), UNUSABLE),
    CacheCase("cache-dir-under-a-file", file_in_place("blocker", extra=("--cache-dir", "BLOCKER/cache")), 0,
              "wrote", ("out", "cache"), UNUSABLE),
    CacheCase("predictions-folder-is-a-file", file_in_place("cache/predictions"), 0, "wrote",
              ("out", "cache/hashes", "cache/scan", "cache/evaluations"), UNUSABLE),
    CacheCase("decoded-folder-is-a-file", file_in_place("cache/decoded", suite_maker=_faces), 0, "wrote",
              ("out", "cache/predictions", "cache/hashes", "cache/scan", "cache/evaluations"), UNUSABLE),
    # rescore only reads the store
    CacheCase("rescore-corrupt-entry", rescore_case(lambda tmp, e: _flip(e / "predictions.npz") or []), 2,
              "no stored predictions", ("out", "cache"), CORRUPT),
    CacheCase("rescore-cache-dir-is-a-file", rescore_case(
        lambda tmp, e: write(tmp / "blocker", "x") and ["--cache-dir", str(tmp / "blocker")]), 2,
        "no stored predictions", ("out", "cache")),
    # the cache command
    CacheCase("cache-ls-root-is-a-file", cache_cmd("ls", lambda tmp: write(tmp / "cache", "mine")), 0, "(empty)"),
    CacheCase("cache-clear-root-is-a-file", cache_cmd("clear", lambda tmp: write(tmp / "cache", "mine")), 0,
              "removed 0 entries"),
    CacheCase("cache-ls-corrupt-meta", cache_cmd("ls", lambda tmp: (_filled(tmp, _mini(tmp)) / "meta.json")
                                                 .write_text("{")), 0, "partial"),
    # exit codes: nothing evaluated is 3, not 0
    CacheCase("every-task-skipped", skipped_suite(ABSENT_TASK.replace("NAME", "a")), 3, "nothing was evaluated",
              RUN_MAY_CHANGE),
    CacheCase("every-task-of-two-skipped", skipped_suite(ABSENT_TASK.replace("NAME", "a")
                                                         + ABSENT_TASK.replace("NAME", "b")), 3,
              "nothing was evaluated", RUN_MAY_CHANGE),
    CacheCase("one-task-ran-one-skipped", skipped_suite(SYNTH_TASK + ABSENT_TASK.replace("NAME", "a")), 0,
              "wrote", RUN_MAY_CHANGE),
    CacheCase("missing-data-error-is-2", skipped_suite(ABSENT_TASK.replace("NAME", "a"), "--missing-data",
                                                       "error"), 2, "nothing was run", RUN_MAY_CHANGE),
    CacheCase("data-check-named-missing-is-2", lambda tmp: ["data", "check", "fer2013", "--data-root", str(tmp)],
              2, "fer2013"),
]


def _resolve(argv: list[str], tmp: Path) -> list[str]:
    return [a.replace("BLOCKER", str(tmp / "blocker")) for a in argv]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_cache(case: CacheCase, tmp_path):
    setup = case.setup
    resolved = CacheCase(case.id, lambda tmp: _resolve(setup(tmp), tmp), case.code, case.message, case.may_change,
                         case.warning)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        check_case(resolved, tmp_path)
    reported = [str(w.message) for w in seen if issubclass(w.category, CacheWarning)]
    if case.warning:
        assert len(reported) == 1 and case.warning.lower() in reported[0].lower(), reported
    else:
        assert reported == [], reported
