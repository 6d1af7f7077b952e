"""``facebench data check``: which native datasets are present, their sizes, and what is wrong otherwise.

``check_datasets`` looks for each dataset under the data root (``<data_root>/<default_dirname>``),
runs the loader's cheap existence check for every split and counts samples per class from the
label side only (label files, folder listings), so a dataset whose images are missing is still counted
("labels only"). Then, for every split found, it decodes a sample of its images (``SAMPLE`` evenly spaced
ones; ``full=True``: all): a split whose sampled images are absent or do not decode is not "ok" ("images
missing"), with the count and the first failure. ``format_report`` renders the rows as text.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from facebench.errors import FacebenchError

NATIVE_DATASETS: tuple[str, ...] = (
    "fer2013", "fer2013-images", "ferplus", "rafdb", "rafdb-compound", "affectnet", "ckplus", "ckplus48", "jaffe",
    "sfew", "expw", "utkface", "celeba", "clap2015", "morph2", "fairface", "lfw", "rfw",
    "mtfl", "300w", "wflw", "cofw29", "aflw19", "xqlfw", "scface", "tinyface",
)


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return re.sub(r"^Dataset '[^']*'(?: \([^)]*\))?: ", "", text)


def _summary(loader, split: str) -> dict:
    if hasattr(loader, "summary"):
        return loader.summary(split)
    ds = loader.load(split)  # generic loaders: listing only, FileImages decode lazily
    return {"n": len(ds), "counts": ds.class_counts(), "rows": None}


SAMPLE = 20  # images decoded per split by default


def image_check(loader, split: str, full: bool = False) -> dict:
    """Decode ``SAMPLE`` evenly spaced images of the split (all with ``full``): ``{"checked", "bad", "first"}``
    (``first``: the first failure, id and reason)."""
    import numpy as np

    ds = loader.load(split)
    n = len(ds)
    picks = range(n) if full or n <= SAMPLE else np.unique(np.linspace(0, n - 1, SAMPLE).round().astype(int))
    bad, first = 0, None
    for i in picks:
        try:
            ds.images.load(int(i))
        except (FacebenchError, OSError, ValueError) as err:
            bad += 1
            first = first or f"{ds.ids[int(i)]}: {_first_line(err)}"
    return {"checked": len(picks), "bad": bad, "first": first}


def _check_images(loader, s: dict, full: bool) -> None:
    """Fold ``image_check`` into a split's row: a note when all decode, a problem (not found) otherwise."""
    try:
        result = image_check(loader, s["split"], full)
    except (FacebenchError, OSError, ValueError) as err:
        s["found"], s["problem"] = False, f"images: {_first_line(err)}"
        return
    s["images"] = result
    what = "all" if full else "sampled"
    if result["bad"]:
        s["found"] = False
        s["problem"] = (f"images missing or unreadable: {result['bad']} of {result['checked']} {what} "
                        f"(first: {result['first']})")
    else:
        s["notes"].append(f"images: {result['checked']} {what} decode")


def check_dataset(name: str, data_root: str | Path | None = None, path: str | Path | None = None,
                  full: bool = False, **options) -> dict:
    """One report row: see ``check_datasets``."""
    from facebench.registry import DATASETS

    cls = DATASETS.get(name)
    row = {"name": name, "description": getattr(cls, "description", ""), "path": None, "status": "missing",
           "found": False, "splits": [], "missing_paths": [], "problem": None,
           "layout": getattr(cls, "layout", ""), "how_to_get": getattr(cls, "how_to_get", "")}
    try:
        loader = cls(path=path, data_root=data_root, **options)
    except FacebenchError as err:
        row["problem"] = _first_line(err)
        return row
    row["path"] = str(loader.root) if getattr(loader, "root", None) is not None else None
    row["layout"] = getattr(loader, "layout", row["layout"])
    if getattr(loader, "needs_files", True) and getattr(loader, "root", None) is None:
        dirname = getattr(loader, "default_dirname", "") or "<dataset>"
        row["problem"] = (f"no location: pass --data-root DIR (expects DIR/{dirname}), set FACEBENCH_DATA, "
                          f"or give the dataset's path")
        return row
    missing: list[str] = []
    expected_n = getattr(loader, "expected_sizes", {}) or {}
    expected_rows = getattr(loader, "expected_rows", {}) or {}
    for split in loader.splits:
        s = {"split": split, "found": False, "n": None, "rows": None, "counts": None,
             "expected": expected_n.get(split, expected_rows.get(split)), "problem": None, "notes": []}
        try:
            for p in loader.required_paths(split):
                if p is not None and not Path(p).exists() and str(p) not in missing:
                    missing.append(str(p))
        except FacebenchError:
            pass
        try:
            loader.check(split)
            s["found"] = True
        except FacebenchError as err:
            s["problem"] = _first_line(err)
        try:
            summary = _summary(loader, split)
            s["n"], s["counts"], s["rows"] = summary["n"], summary["counts"], summary.get("rows")
            if summary.get("note"):
                s["notes"].append(summary["note"])
        except (FacebenchError, OSError, ValueError) as err:
            if s["problem"] is None:
                s["problem"] = _first_line(err)
            s["found"] = False
        if s["n"] == 0 and s["problem"] is None:
            s["problem"] = f"no {split} samples"
            s["found"] = False
        if s["found"] and getattr(loader, "needs_files", True):
            _check_images(loader, s, full)
        if split in expected_n and s["n"] is not None and s["n"] != expected_n[split]:
            s["notes"].append(f"expected {expected_n[split]:,} samples (published size), found {s['n']:,}")
        if split in expected_rows and s["rows"] is not None and s["rows"] != expected_rows[split]:
            s["notes"].append(f"expected {expected_rows[split]:,} label rows (published size), found {s['rows']:,}")
        row["splits"].append(s)
    row["missing_paths"] = missing
    splits = row["splits"]
    row["found"] = bool(splits) and all(s["found"] for s in splits)
    if row["found"]:
        row["status"] = "ok"
    elif any(s["found"] for s in splits):
        row["status"] = "incomplete"
    elif any(s.get("images") for s in splits):
        row["status"] = "images missing"
    elif any(s["n"] for s in splits):
        row["status"] = "labels only"
    else:
        row["status"] = "missing"
    problems = [s["problem"] for s in splits if s["problem"]]
    row["problem"] = problems[0] if problems else None
    return row


def check_datasets(names=None, data_root=None, *, paths: dict | None = None, options: dict | None = None,
                   full: bool = False) -> list[dict]:
    """Report, for each native dataset (or ``names``), whether it is found and its counts.

    Each row: ``name``, ``description``, ``path`` (the folder looked at), ``status`` (ok, incomplete: some
    splits missing or empty, labels only: counted but images/pixels missing, missing), ``found`` (every
    split passes the loader's check), ``splits`` (per split: ``found``, ``n`` samples, ``rows`` raw label
    entries, ``counts`` per class, ``expected`` published size, ``problem``, ``notes``), ``missing_paths``,
    ``problem`` (the first one), ``layout`` and ``how_to_get``; per split found, ``images`` (``image_check``:
    a sample decoded, all with ``full``). ``paths``/``options`` give per-dataset ``path`` and loader options
    (e.g. ``{"ferplus": {"images": "none"}}``).
    """
    if isinstance(names, str):
        names = [names]
    paths, options = paths or {}, options or {}
    return [check_dataset(name, data_root, paths.get(name), full, **options.get(name, {}))
            for name in (names or NATIVE_DATASETS)]


def _counts_text(counts: dict) -> str:
    return ", ".join(f"{c} {n:,}" for c, n in counts.items())


def format_report(rows: list[dict]) -> str:
    """Plain-text report: one block per dataset, one line per split, the layout when something is missing."""
    out = []
    for row in rows:
        out.append(f"{row['name']:<16} {row['status']:<12} {row['path'] or '(no location)'}")
        for s in row["splits"] if row["status"] != "missing" else []:
            if s["n"] is None:
                size = "-"
            elif s["rows"] is not None and s["rows"] != s["n"]:
                size = f"{s['n']:,} of {s['rows']:,} rows"
            else:
                size = f"{s['n']:,}"
            mark = "ok" if s["found"] else "--"
            line = f"  {mark} {s['split']:<6} {size:>20}"
            if s["counts"]:
                line += "   " + _counts_text(s["counts"])
            out.append(textwrap.fill(line, width=110, subsequent_indent=" " * 35))
            for note in s["notes"]:
                out.append(f"       note: {note}")
            if s["problem"] and not s["found"]:
                out.append(f"       problem: {s['problem']}")
        if row["problem"] and (row["status"] == "missing" and not row["missing_paths"] or not row["splits"]):
            out.append(f"  problem: {row['problem']}")
        if row["status"] != "ok":
            for p in row["missing_paths"]:
                out.append(f"  missing: {p}")
            if row["layout"]:
                out.append("  expected layout:")
                out.extend("  " + line for line in row["layout"].rstrip().splitlines())
            if row["how_to_get"]:
                out.append(textwrap.fill(f"  how to get it: {row['how_to_get']}", width=110, subsequent_indent="    "))
        out.append("")
    return "\n".join(out).rstrip() + "\n"
