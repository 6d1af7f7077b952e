"""Integrity of the prediction store and the decoded-image cache, the fallback when the cache folder
cannot be written, and the exit-code table (issue 16, item 6).

Oracles: hashlib over the file's bytes, arrays of an untouched first run (np.array_equal), the
README's table read as text."""

import errno
import hashlib
import json
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facebench import errors
from facebench.cli import main
from facebench.data.generic import ImageFolder
from facebench.data.synthetic import SynthFaces
from facebench.engine import decoded as dec
from facebench.engine import store as st
from facebench.engine.decoded import DecodedCache
from facebench.engine.inference import InferenceSettings, run_inference
from facebench.engine.store import PredictionStore, Predictions
from facebench.errors import CacheWarning
from facebench.models.synth_cnn import SynthCNNAdapter

REPO = Path(__file__).resolve().parents[1]
SETTINGS = InferenceSettings(batch_size=32, shard_size=32, progress=False, device="cpu")


def cache_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, CacheWarning)]


def synth_split(n=80):
    return SynthFaces(n=n).load("test")


def predict(dataset, store, settings=SETTINGS):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        preds, report = run_inference(SynthCNNAdapter(), dataset, store, heads=("expression",), settings=settings)
    return preds, report, cache_warnings(seen)


# -- the prediction store -------------------------------------------------------------------------

def test_meta_records_the_blake2b_of_the_file_and_shards_carry_one(tmp_path):
    store = PredictionStore(tmp_path)
    store.save("k" * 24, Predictions(np.array(["a", "b"]), {"h": np.eye(2, dtype=np.float32)}), {"model": "m"})
    path = store.entry_dir("k" * 24) / "predictions.npz"
    meta = json.loads((path.parent / "meta.json").read_text())
    raw = path.read_bytes()
    assert meta["checksum"] == "blake2b:" + hashlib.blake2b(raw, digest_size=20).hexdigest()
    assert meta["bytes"] == len(raw)
    store.write_shard("s" * 24, 0, np.array(["a"]), {"h": np.ones((1, 2), dtype=np.float32)})
    with np.load(store.entry_dir("s" * 24) / "shards" / "shard-000000.npz") as data:
        assert st.SHARD_CHECKSUM in data.files


def _flip(path: Path, at: float = 0.5):
    raw = bytearray(path.read_bytes())
    raw[int(len(raw) * at)] ^= 0xFF
    path.write_bytes(bytes(raw))


def _other_valid_npz(path: Path):
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays = {k: (v + 1 if v.dtype.kind == "f" else v) for k, v in arrays.items()}
    np.savez(path, **arrays)  # a valid zip of the same shape, other numbers


CORRUPTIONS = {
    "byte flipped": lambda p: _flip(p, 0.6),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "zero bytes": lambda p: p.write_bytes(b""),
    "not a zip": lambda p: p.write_bytes(b"garbage" * 100),
    "bytes appended": lambda p: p.write_bytes(p.read_bytes() + b"\0"),
    "other valid file": _other_valid_npz,
    "meta checksum edited": lambda p: (p.parent / "meta.json").write_text(
        json.dumps({**json.loads((p.parent / "meta.json").read_text()), "checksum": "blake2b:00"})),
    "meta not json": lambda p: (p.parent / "meta.json").write_text("{not json"),
}


@pytest.mark.parametrize("how", sorted(CORRUPTIONS))
def test_a_corrupt_complete_entry_is_reported_once_removed_and_recomputed(tmp_path, how):
    dataset, store = synth_split(), PredictionStore(tmp_path)
    first, report, seen = predict(dataset, store)
    assert not report.reused and seen == []
    npz = store.entry_dir(report.key) / "predictions.npz"
    CORRUPTIONS[how](npz)
    st._verified.clear()  # as in a new process
    again, report2, seen = predict(dataset, store)
    assert not report2.reused and report2.computed_samples == len(dataset)
    assert len(seen) == 1 and report.key in seen[0] and "corrupt" in seen[0]
    assert np.array_equal(again.outputs["expression"], first.outputs["expression"])
    third, report3, seen = predict(dataset, store)  # the recomputed entry is whole again
    assert report3.reused and seen == []
    assert np.array_equal(third.outputs["expression"], first.outputs["expression"])


def test_deleted_meta_means_no_entry_and_a_silent_recompute(tmp_path):
    dataset, store = synth_split(), PredictionStore(tmp_path)
    first, report, _ = predict(dataset, store)
    (store.entry_dir(report.key) / "meta.json").unlink()
    again, report2, seen = predict(dataset, store)
    assert not report2.reused and seen == []
    assert np.array_equal(again.outputs["expression"], first.outputs["expression"])


def test_an_entry_is_hashed_once_per_process_and_file_version(tmp_path, monkeypatch):
    dataset, store = synth_split(), PredictionStore(tmp_path)
    _, report, _ = predict(dataset, store)
    calls = []
    real = st.digest_file
    monkeypatch.setattr(st, "digest_file", lambda p, *a: calls.append(p) or real(p, *a))
    predict(dataset, store)
    assert calls == []  # saved by this process: known good
    st._verified.clear()
    predict(dataset, store)
    predict(dataset, store)
    assert len(calls) == 1  # has + load, twice: one hash


def test_an_entry_without_checksum_is_read_whole_instead(tmp_path):
    dataset, store = synth_split(), PredictionStore(tmp_path)
    first, report, _ = predict(dataset, store)
    meta_path = store.entry_dir(report.key) / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["checksum"], meta["bytes"]
    meta_path.write_text(json.dumps(meta))
    st._verified.clear()
    _, report2, seen = predict(dataset, store)
    assert report2.reused and seen == []
    _flip(store.entry_dir(report.key) / "predictions.npz", 0.5)  # the zip's CRC-32 catches it
    meta_path.write_text(json.dumps(meta))
    st._verified.clear()
    again, report3, seen = predict(dataset, store)
    assert not report3.reused and len(seen) == 1
    assert np.array_equal(again.outputs["expression"], first.outputs["expression"])


def test_a_shard_that_fails_its_checksum_is_skipped(tmp_path):
    store = PredictionStore(tmp_path)
    store.write_shard("k", 0, np.array(["a"]), {"h": np.zeros((1, 2), dtype=np.float32)})
    store.write_shard("k", 1, np.array(["b"]), {"h": np.ones((1, 2), dtype=np.float32)})
    path = store.entry_dir("k") / "shards" / "shard-000001.npz"
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["out__h"] = arrays["out__h"] * 2  # valid npz, old checksum
    np.savez(path, **arrays)
    ids, outs, nxt = store.read_shards("k", ["h"])
    assert [i.tolist() for i in ids] == [["a"]] and nxt == 2


def test_a_corrupt_shard_costs_its_samples_only(tmp_path, monkeypatch):
    from facebench.engine.inference import STOP_AFTER_SHARDS_ENV

    dataset, store = synth_split(96), PredictionStore(tmp_path)
    reference, _, _ = predict(dataset, PredictionStore(tmp_path / "ref"))
    monkeypatch.setenv(STOP_AFTER_SHARDS_ENV, "2")  # interrupted after two shards of 32
    with pytest.raises(KeyboardInterrupt):
        predict(dataset, store)
    monkeypatch.delenv(STOP_AFTER_SHARDS_ENV)
    shards = sorted(next(store.predictions_dir.iterdir()).glob("shards/shard-*.npz"))
    assert len(shards) == 2
    _flip(shards[0], 0.7)
    preds, report, seen = predict(dataset, store)
    assert report.resumed_samples == 32 and report.computed_samples == 64 and seen == []
    assert np.allclose(preds.outputs["expression"], reference.outputs["expression"], atol=1e-6)


# -- the decoded-image cache ----------------------------------------------------------------------

@pytest.fixture()
def folder(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "faces"
    for c, cls in enumerate(("angry", "happy", "neutral")):
        for i in range(6):
            path = root / "test" / cls / f"{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (40 + i, 48, 3), dtype=np.uint8)).save(path)
    return root


def _decoded_entry(cache_root: Path) -> Path:
    return next(p for p in (cache_root / "decoded").iterdir() if not p.name.startswith("."))


DECODED_CORRUPTIONS = {
    "byte flipped": lambda p: _flip(p, 0.8),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:-100]),
    "zero bytes": lambda p: p.write_bytes(b""),
    "header zeroed": lambda p: p.write_bytes(b"\0" * 128 + p.read_bytes()[128:]),
}


@pytest.mark.parametrize("how", sorted(DECODED_CORRUPTIONS))
def test_a_corrupt_decoded_entry_is_reported_rebuilt_and_gives_the_same_predictions(folder, tmp_path, how):
    dataset = ImageFolder(path=folder).load("test")
    store = PredictionStore(tmp_path / "cache")
    first, report, seen = predict(dataset, store)
    assert seen == []
    npy = _decoded_entry(store.root) / "images.npy"
    meta = json.loads((npy.parent / "meta.json").read_text())
    assert meta["checksum"] == "blake2b:" + hashlib.blake2b(npy.read_bytes(), digest_size=20).hexdigest()
    good = npy.read_bytes()
    shutil.rmtree(store.predictions_dir)  # the next run must read the decoded cache
    DECODED_CORRUPTIONS[how](npy)
    dec._verified.clear()  # as in a new process
    again, _, seen = predict(dataset, store)
    assert len(seen) == 1 and "decoded-image cache entry" in seen[0] and npy.parent.name in seen[0]
    assert npy.read_bytes() == good  # rebuilt
    assert np.array_equal(again.outputs["expression"], first.outputs["expression"])


def test_large_entries_are_checked_by_sampled_pages(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(dec, "FULL_CHECK_BYTES", 1000)
    monkeypatch.setattr(dec, "SAMPLE_PAGES", 8)
    monkeypatch.setattr(dec, "PAGE", 256)
    dataset, spec = ImageFolder(path=folder).load("test"), SynthCNNAdapter().input_spec
    cache = DecodedCache(tmp_path)
    key = cache.key(dataset, spec)
    assert cache.build(key, dataset, spec, progress=False) is not None
    npy = cache.dir / key / "images.npy"
    assert json.loads((npy.parent / "meta.json").read_text())["checksum"].startswith("blake2b-pages:")
    dec._verified.clear()
    assert cache.get(key, dataset, spec) is not None
    raw = bytearray(npy.read_bytes())
    quarter = len(raw) // 4
    raw[quarter : 2 * quarter] = bytes(quarter)  # a zeroed region longer than the sampling step (1/7)
    npy.write_bytes(bytes(raw))
    dec._verified.clear()
    with pytest.warns(CacheWarning, match="does not match the checksum"):
        assert cache.get(key, dataset, spec) is None
    assert not (cache.dir / key).exists()


# -- a cache folder that cannot be written --------------------------------------------------------

def _raise_under(root: Path, err_no: int):
    def check(path):
        if str(path).startswith(str(root)):
            raise OSError(err_no, f"simulated {errno.errorcode[err_no]}", str(path))
    return check


@pytest.mark.parametrize("err_no", [errno.EROFS, errno.EACCES, errno.ENOSPC])
def test_an_unwritable_cache_gives_one_warning_and_the_same_predictions(folder, tmp_path, monkeypatch, err_no):
    dataset = ImageFolder(path=folder).load("test")
    reference, _, _ = predict(dataset, PredictionStore(tmp_path / "ref"))
    root = tmp_path / "ro-cache"  # (tmp_path / "cache" is FACEBENCH_CACHE: the content hashes' stat cache)
    check = _raise_under(root, err_no)
    real_mkdir, real_mkstemp = Path.mkdir, tempfile.mkstemp
    monkeypatch.setattr(Path, "mkdir", lambda self, *a, **k: check(self) or real_mkdir(self, *a, **k))
    monkeypatch.setattr(tempfile, "mkstemp", lambda *a, dir=None, **k: check(dir) or real_mkstemp(*a, dir=dir, **k))
    preds, report, seen = predict(dataset, PredictionStore(root))
    assert len(seen) == 1 and "cannot be used" in seen[0] and str(root) in seen[0]
    assert not report.reused and report.computed_samples == len(dataset)
    assert np.array_equal(preds.outputs["expression"], reference.outputs["expression"])
    assert not root.exists()


def test_a_full_disk_while_writing_shards_gives_one_warning(tmp_path, monkeypatch):
    dataset = synth_split(100)
    reference, _, _ = predict(dataset, PredictionStore(tmp_path / "ref"))

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(st, "atomic_write_bytes", full)
    preds, report, seen = predict(dataset, PredictionStore(tmp_path / "cache"))
    assert len(seen) == 1 and "No space left" in seen[0]
    assert np.array_equal(preds.outputs["expression"], reference.outputs["expression"])


@pytest.mark.parametrize("layout", ["root is a file", "root under a file", "predictions is a file"])
def test_a_file_in_the_cache_s_place_fails_even_for_root(tmp_path, layout):
    dataset = synth_split()
    reference, _, _ = predict(dataset, PredictionStore(tmp_path / "ref"))
    blocker = tmp_path / "blocker"
    blocker.write_text("user's file")
    root = {"root is a file": blocker, "root under a file": blocker / "cache",
            "predictions is a file": tmp_path / "c"}[layout]
    if layout == "predictions is a file":
        root.mkdir()
        (root / "predictions").write_text("user's file")
    preds, _, seen = predict(dataset, PredictionStore(root))
    assert len(seen) == 1 and "cannot be used" in seen[0]
    assert np.array_equal(preds.outputs["expression"], reference.outputs["expression"])
    assert blocker.read_text() == "user's file"


def test_a_cache_folder_that_vanishes_during_the_run_is_made_again(tmp_path, monkeypatch):
    dataset = synth_split(100)
    reference, _, _ = predict(dataset, PredictionStore(tmp_path / "ref"))
    root = tmp_path / "cache"
    real = PredictionStore.write_shard

    def vanish_then_write(self, *a, **k):
        shutil.rmtree(self.root, ignore_errors=True)
        return real(self, *a, **k)

    monkeypatch.setattr(PredictionStore, "write_shard", vanish_then_write)
    preds, report, seen = predict(dataset, PredictionStore(root))
    assert seen == [] and np.array_equal(preds.outputs["expression"], reference.outputs["expression"])
    monkeypatch.undo()
    _, report, _ = predict(dataset, PredictionStore(root))
    assert report.reused


MINI = """\
name: mini
defaults: {batch_size: 64, bootstrap: 20, shard_size: 64}
tasks:
  - {name: clean, dataset: synth, split: test, protocol: closed_set, dataset_args: {n: 120}}
"""


def _run(tmp_path, *extra):
    suite = tmp_path / "mini.yaml"
    suite.write_text(MINI)
    return main(["run", str(suite), "--model", "synth-cnn", "--no-progress", "--quiet", "--no-figures", *extra])


def test_cli_run_with_a_read_only_cache_exits_0_with_the_same_results(tmp_path, monkeypatch, capsys):
    assert _run(tmp_path, "--out", str(tmp_path / "a")) == 0
    check = _raise_under(tmp_path / "ro", errno.EROFS)
    real_mkdir, real_mkstemp = Path.mkdir, tempfile.mkstemp
    monkeypatch.setattr(Path, "mkdir", lambda self, *a, **k: check(self) or real_mkdir(self, *a, **k))
    monkeypatch.setattr(tempfile, "mkstemp", lambda *a, dir=None, **k: check(dir) or real_mkstemp(*a, dir=dir, **k))
    with pytest.warns(CacheWarning) as seen:
        assert _run(tmp_path, "--out", str(tmp_path / "b"), "--cache-dir", str(tmp_path / "ro")) == 0
    assert len(cache_warnings(seen)) == 1
    records = [json.loads((tmp_path / o / "results.json").read_text())["records"] for o in ("a", "b")]
    assert [r["value"] for r in records[0]] == [r["value"] for r in records[1]]


# -- exit codes -----------------------------------------------------------------------------------

def test_every_task_skipped_exits_3_and_still_writes_the_run_folder(tmp_path, capsys):
    suite = tmp_path / "s.yaml"
    suite.write_text(f"""\
name: skipped
defaults: {{missing_data: skip}}
tasks:
  - {{name: a, dataset: imagefolder, path: {tmp_path / 'absent'}, split: test, protocol: closed_set}}
""")
    code = main(["run", str(suite), "--model", "synth-cnn", "--out", str(tmp_path / "o"), "--no-progress",
                 "--quiet", "--no-figures"])
    assert code == errors.EXIT_NOTHING_EVALUATED == 3
    assert "nothing was evaluated" in capsys.readouterr().err
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert [t["status"] for t in results["tasks"]] == ["skipped"] and "does not exist" in results["tasks"][0]["reason"]


def test_a_bug_is_one_line_and_exit_4_the_traceback_only_under_debug(monkeypatch, capsys):
    import facebench.cli as cli

    def broken(args):
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(cli, "cmd_list", broken)
    assert main(["list", "models"]) == errors.EXIT_INTERNAL_ERROR == 4
    err = capsys.readouterr().err
    assert "internal error: ZeroDivisionError: division by zero" in err and "Traceback" not in err
    assert "second line" not in err and "FACEBENCH_DEBUG=1" in err
    monkeypatch.setenv("FACEBENCH_DEBUG", "1")
    assert main(["list", "models"]) == 4
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_data_check_exits_2_when_a_named_dataset_is_missing(tmp_path, capsys):
    assert main(["data", "check", "fer2013", "--data-root", str(tmp_path)]) == errors.EXIT_BAD_INPUT


def _readme_exit_table() -> dict[str, int]:
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\|\s*(\d+)\s*\|\s*`(EXIT_[A-Z_]+)`\s*\|", line)
        if m:
            rows[m.group(2)] = int(m.group(1))
    return rows


def test_the_readme_exit_code_table_matches_the_constants():
    constants = {name: value for name, value in vars(errors).items() if name.startswith("EXIT_")}
    assert len(constants) >= 8
    assert _readme_exit_table() == constants


def test_each_run_reports_an_unusable_cache_once(tmp_path):
    (tmp_path / "blocker").write_text("user's file")
    for out in ("a", "b"):  # two runs in one process (the Python API): one warning each
        with pytest.warns(CacheWarning) as seen:
            assert _run(tmp_path, "--out", str(tmp_path / out), "--cache-dir", str(tmp_path / "blocker")) == 0
        assert len(cache_warnings(seen)) == 1
    assert (tmp_path / "blocker").read_text() == "user's file"
