import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own prediction store and no inherited data root."""
    monkeypatch.setenv("FACEBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FACEBENCH_DATA", raising=False)
    from facebench.content import set_cache_root

    set_cache_root(None)  # run_suite points the content-hash cache at its --cache-dir; start each test afresh
    yield
    set_cache_root(None)


@pytest.fixture
def shared_data():
    root = Path(os.environ.get("FACEBENCH_SHARED_DATA", SHARED_DATA))
    if not root.exists():
        pytest.skip(f"real data folder {root} not present (set FACEBENCH_SHARED_DATA)")
    return root
