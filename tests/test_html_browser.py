"""The HTML report in a real browser (issue 22, item 4): the static site ``facebench report`` writes, opened in
headless Chromium (Debian's ``chromium``) through Playwright for Python with the system browser (no browser
download). Every page loads with no console error, no failed or network request, every image loads
(``naturalWidth > 0``), and clicking a sortable column header reorders the rows by that column."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from facebench.cli import main
from facebench.runner import run_suite

INSTALL = ("needs Chromium and Playwright for Python: apt-get install chromium && pip install playwright "
           "(the system chromium is used through executable_path; no `playwright install` download)")

SUITE = """name: browser
defaults: {bootstrap: 10}
tasks:
  - {name: closed, dataset: synth, split: test, dataset_args: {n: 120}, protocol: closed_set}
  - {name: fair, dataset: synth, split: test, dataset_args: {n: 120}, protocol: fairness, params: {by: [skin_tone]}}
"""


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip(INSTALL)
    return path


def _copy_as_model(src: Path, dest: Path, model: str, shift: float) -> None:
    """The run folder ``src`` as another model's: its name changed and fraction values lowered by ``shift``."""
    shutil.copytree(src, dest)
    results = json.loads((dest / "results.json").read_text())
    results["model"]["name"] = model
    for rec in results["records"]:
        rec["model"] = model
        if rec.get("unit") == "fraction" and rec.get("value") is not None:
            rec["value"] = max(0.0, rec["value"] - shift)
            if rec.get("ci"):
                rec["ci"] = [max(0.0, c - shift) for c in rec["ci"]]
    (dest / "results.json").write_text(json.dumps(results))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A report of three runs (one real run of synth-cnn and two copies as other models) -> its site folder."""
    root = tmp_path_factory.mktemp("browser")
    suite = root / "browser.yaml"
    suite.write_text(SUITE)
    run_suite(suite, "synth-cnn", out=root / "a", progress=False, figures=True, log=lambda m: None)
    _copy_as_model(root / "a", root / "b", "model-b", 0.05)
    _copy_as_model(root / "a", root / "c", "model-c", -0.03)
    assert main(["report", str(root / "a"), str(root / "b"), str(root / "c"), "--out", str(root / "r")]) == 0
    return root / "r" / "site"


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason=INSTALL)
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield chromium
        finally:
            chromium.close()


def _open(browser, page_path: Path):
    """(page, problems): the page loaded, and every console error, page error, failed request and non-local
    request seen while loading it."""
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on("request", lambda r: None if r.url.startswith(("file:", "data:")) else problems.append(
        f"network request: {r.url}"))
    page.goto(page_path.as_uri(), wait_until="load")
    return page, problems


IMAGES = ("imgs => imgs.map(i => ({src: i.getAttribute('src'), alt: i.getAttribute('alt'), complete: i.complete, "
          "width: i.naturalWidth}))")


def test_every_page_loads_without_errors_and_every_image_loads(site, browser):
    pages = [site / "index.html", *sorted((site / "tasks").glob("*.html"))]
    assert len(pages) >= 3
    seen_images = 0
    for path in pages:
        page, problems = _open(browser, path)
        images = page.eval_on_selector_all("img", IMAGES)
        page.close()
        assert problems == [], f"{path.name}: {problems}"
        assert all(img["complete"] and img["width"] > 0 for img in images), f"{path.name}: {images}"
        assert all(img["alt"] and not img["alt"].endswith(".png") for img in images), images  # captions, not files
        seen_images += len(images)
    index_page, _ = _open(browser, site / "index.html")
    comparison = index_page.eval_on_selector_all("img", IMAGES)
    index_page.close()
    assert len(comparison) >= 3  # the cross-model figures on the index: forest plot, heatmap, overlays
    assert seen_images >= len(comparison) + 4  # and each task page's figures


SORT_CHECK = """
table => {
  const values = (col) => Array.from(table.tBodies[0].rows, r => r.cells[col].getAttribute('data-sort'));
  const heads = Array.from(table.querySelectorAll('th.sortable'));
  for (const th of heads) {
    const col = parseInt(th.getAttribute('data-col'), 10);
    const before = values(col);
    const firstBefore = Array.from(table.tBodies[0].rows, r => r.cells[0].textContent);
    th.click();
    const after = values(col);
    const firstAfter = Array.from(table.tBodies[0].rows, r => r.cells[0].textContent);
    if (firstAfter.join('|') !== firstBefore.join('|')) {
      return {col, order: th.getAttribute('data-order'), numeric: th.getAttribute('data-type') === 'number',
              before, after, firstBefore, firstAfter};
    }
  }
  return null;
}
"""


def test_clicking_a_column_header_sorts_the_rows(site, browser):
    page, problems = _open(browser, site / "index.html")
    tables = page.query_selector_all("table:has(th.sortable)")
    assert tables, "no sortable table on the index"
    result = None
    for table in tables:
        result = table.evaluate(SORT_CHECK)
        if result:
            break
    page.close()
    assert problems == []
    assert result is not None, "no header click reordered any table's rows"
    assert sorted(result["firstAfter"]) == sorted(result["firstBefore"])  # the same rows, reordered
    keyed = [v for v in result["after"] if v not in ("", None)]
    keys = [float(v) for v in keyed] if result["numeric"] else keyed
    assert keys == sorted(keys, reverse=result["order"] == "desc")  # in the clicked column's order
    assert [v for v in result["after"] if v in ("", None)] == result["after"][len(keyed):]  # blanks last
