"""`facebench cache ls / clear` and the small caches: the content-hash stat cache and the header-scan memory."""

from facebench.cli import main
from tests.hostile._harness import MINI_SUITE, write


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_clear_only_hashes_removes_facebench_files_and_keeps_the_users(tmp_path, capsys):
    folder = tmp_path / "faces" / "test" / "happy"
    folder.mkdir(parents=True)
    import numpy as np
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    suite = write(tmp_path / "s.yaml", f"""\
        name: s
        defaults: {{bootstrap: 0}}
        tasks:
          - {{name: t, dataset: imagefolder, path: "{tmp_path / 'faces'}", split: test, protocol: closed_set,
             params: {{unsupported_classes: drop, extra_model_classes: restrict}}}}
        """)
    cache = tmp_path / "cache"
    assert main(["run", str(suite), "--model", "synth-cnn", "--out", str(tmp_path / "o"), "--cache-dir",
                 str(cache), "--no-progress", "--quiet", "--no-figures"]) == 0
    small = [f for f in _files(cache) if f.startswith(("hashes/", "scan/"))]
    assert any(f.startswith("hashes/") for f in small) and any(f.startswith("scan/") for f in small)
    (cache / "hashes" / "notes.txt").write_text("mine")
    (cache / "scan" / "passed.npz").write_text("mine too: not facebench's name")
    capsys.readouterr()
    assert main(["cache", "ls", "--cache-dir", str(cache)]) == 0
    assert f"{len(small)} files" in capsys.readouterr().out
    before = [f for f in _files(cache) if not f.startswith(("hashes/", "scan/"))]
    assert main(["cache", "clear", "--only", "hashes", "--cache-dir", str(cache)]) == 0
    assert f"removed 0 entries from {cache} (and {len(small)} content-hash / scan cache files)" in capsys.readouterr().out
    after = _files(cache)
    assert [f for f in after if not f.startswith(("hashes/", "scan/"))] == before  # predictions, decoded kept
    assert sorted(f for f in after if f.startswith(("hashes/", "scan/"))) == ["hashes/notes.txt", "scan/passed.npz"]


def test_clear_with_a_dataset_filter_keeps_the_small_caches(tmp_path):
    suite = write(tmp_path / "s.yaml", MINI_SUITE)
    cache = tmp_path / "cache"
    (cache / "hashes").mkdir(parents=True)
    kept = cache / "hashes" / ("0" * 32 + ".npz")
    kept.write_bytes(b"x")
    assert main(["cache", "clear", "--dataset", "synth", "--cache-dir", str(cache)]) == 0
    assert kept.exists() and suite.exists()
