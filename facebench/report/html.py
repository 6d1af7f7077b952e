"""A static HTML site from several runs: ``index.html`` (the merged leaderboard) and one page per task.

Self-contained: inline CSS, a small inline sorting script (click a column header), no external
fonts, scripts or images; figures passed in are copied next to the pages and referenced relatively.
All text goes through :func:`html.escape`.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from html import escape
from pathlib import Path
from typing import Sequence

from facebench.report.names import figure_name, sanitise_filename
from facebench.report.tables import Table, _ci, _format, _scale, build_table, load_runs, to_csv, to_html_table

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:2rem;color:#1d232a;
background:#fff;line-height:1.4}
h1{font-size:1.6rem;margin:0 0 .5rem}h2{font-size:1.25rem;margin-top:2rem}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
th,td{border:1px solid #c9d1d9;padding:.35rem .6rem;text-align:right;vertical-align:top}
th{background:#eef2f6}td:first-child,th:first-child{text-align:left}
th.task{text-align:center;background:#dde6ef}
th.sortable{cursor:pointer;user-select:none}th.sortable:hover{background:#d0dbe6}
th.sorted-asc::after{content:" \\25B2"}th.sorted-desc::after{content:" \\25BC"}
td.best{font-weight:700;background:#e6f4ea}
tbody tr:nth-child(even){background:#f8fafc}
.notes li{margin:.2rem 0}.muted{color:#57606a;font-size:.85rem}
details pre{text-align:left;white-space:pre-wrap;margin:.3rem 0;font-size:.8rem}
td.text{text-align:left}
td:first-child{white-space:nowrap}
img.figure{max-width:100%;border:1px solid #c9d1d9;margin:.5rem 0}
a{color:#0b5cad}
""".strip()

SORT_SCRIPT = """
(function(){
  document.querySelectorAll("table.leaderboard").forEach(function(table){
    var heads = table.querySelectorAll("th.sortable");
    heads.forEach(function(th){
      th.addEventListener("click", function(){
        var col = parseInt(th.getAttribute("data-col"), 10);
        var numeric = th.getAttribute("data-type") === "number";
        var current = th.getAttribute("data-order");
        var order = current ? (current === "asc" ? "desc" : "asc") : (th.getAttribute("data-direction") || "asc");
        heads.forEach(function(h){ h.removeAttribute("data-order"); h.classList.remove("sorted-asc", "sorted-desc"); });
        th.setAttribute("data-order", order);
        th.classList.add("sorted-" + order);
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function(a, b){
          var x = a.cells[col].getAttribute("data-sort"), y = b.cells[col].getAttribute("data-sort");
          if (x === "" && y === "") return 0;
          if (x === "") return 1;
          if (y === "") return -1;
          var c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
          return order === "asc" ? c : -c;
        });
        rows.forEach(function(r){ body.appendChild(r); });
      });
    });
  });
})();
""".strip()


def task_slug(name: str) -> str:
    """A file-name-safe slug for a task (``[A-Za-z0-9._-]``; a short hash is added when characters were replaced)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "task"
    if slug != name:
        slug += "-" + hashlib.sha1(str(name).encode("utf-8")).hexdigest()[:6]
    return slug


def _page(title: str, body: str) -> str:
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        '<link rel="icon" href="data:,">',  # no favicon request: nothing but the site's own files is loaded
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        body,
        f"<script>{SORT_SCRIPT}</script>",
        "</body>",
        "</html>",
        "",
    ])


def _task_names(table: Table) -> list[str]:
    names: list[str] = []
    for c in table.columns:
        if c.task not in names:
            names.append(c.task)
    for run in table.runs:
        for t in run["results"].get("tasks", []):
            if t.get("name") not in names:
                names.append(t.get("name"))
    return names


def _index(table: Table, links: dict[str, str], title: str, boards: str = "") -> str:
    parts = [f"<h1>{escape(title)}</h1>",
             f'<p class="muted">{len(table.rows)} run(s), {len(table.columns)} column(s). Click a column header '
             "to sort (best first on the first click). Bold: best value per column. Percentages for accuracy-like "
             'metrics; 95% confidence intervals in brackets. <a href="leaderboard.csv">CSV</a></p>']
    parts.append(boards)  # the models x tasks boards (facebench.report.board_formats.to_html), when given
    if table.columns:
        parts.append("<h2>All headline metrics</h2>" if boards else "")
        parts.append(to_html_table(table, task_links=links))
    else:
        parts.append("<p>No records to show.</p>")
    if table.notes:
        parts.append("<h2>Notes</h2>")
        parts.append('<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in table.notes) + "</ul>")
    if table.status:
        parts.append("<h2>Tasks not completed</h2>")
        parts.append('<ul class="notes">' + "".join(
            f"<li>{escape(row)} / {escape(task)}: {escape(s)}</li>" for (row, task), s in table.status.items())
            + "</ul>")
    parts.append("<h2>Runs</h2>")
    rows = []
    for run in table.runs:
        res = run["results"]
        model, suite = res.get("model") or {}, res.get("suite") or {}
        rows.append("<tr>" + "".join(f'<td class="text">{escape(str(v))}</td>' for v in (
            run["label"], model.get("name", ""), model.get("fingerprint", ""), suite.get("name", ""),
            suite.get("fingerprint", ""), run.get("path") or "")) + "</tr>")
    parts.append("<table><thead><tr><th>run</th><th>model</th><th>model fingerprint</th><th>suite</th>"
                 "<th>suite fingerprint</th><th>folder</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    parts.append("<h2>Tasks</h2><ul>" + "".join(
        f'<li><a href="{escape(href)}">{escape(name)}</a></li>' for name, href in links.items()) + "</ul>")
    return _page(title, "\n".join(parts))


def figure_caption(png: Path, task: str) -> str:
    """A figure's caption from its file: ``<folder>/<task>-<kind>.png`` -> "<kind's display name> (<folder>)"
    (the folder is the run's, in a report), e.g. "Reliability diagram (synth-cnn)"."""
    prefix = f"{sanitise_filename(task)}-"
    stem = png.stem
    kind = stem[len(prefix):] if stem.startswith(prefix) else stem
    return f"{figure_name(kind)} ({png.parent.name})"


def _task_page(name: str, table: Table, figures: list[tuple[str, str]], title: str) -> str:
    parts = ['<p><a href="../index.html">&larr; leaderboard</a></p>', f"<h1>{escape(name)}</h1>"]
    notes = [n for n in table.notes if n.startswith(f"Task '{name}'")]
    if notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")
    for run in table.runs:
        res = run["results"]
        task = next((t for t in res.get("tasks", []) if t.get("name") == name), None)
        parts.append(f"<h2>{escape(run['label'])}</h2>")
        if task is None:
            parts.append("<p class=\"muted\">Not part of this run.</p>")
            continue
        fps = task.get("fingerprints") or {}
        parts.append('<p class="muted">' + escape(
            f"dataset {task.get('dataset')} / {task.get('split')}, protocol {task.get('protocol')}, "
            f"n = {task.get('n', '')}; fingerprints: "
            + ", ".join(f"{k} {v}" for k, v in sorted(fps.items()) if isinstance(v, str))) + "</p>")
        if task.get("status", "ok") != "ok":
            parts.append(f"<p>{escape(str(task.get('status')))}: {escape(str(task.get('reason', '')))}</p>")
            continue
        parts.append(_sample_counts(task))
        records = [r for r in res.get("records", []) if r.get("task") == name]
        if not records:
            parts.append('<p class="muted">No records.</p>')
            continue
        rows = []
        for r in records:
            interval = _ci(r)
            scale, digits = _scale(r)
            ci_text = ("" if interval is None
                       else f"[{interval[0] * scale:.{digits}f}, {interval[1] * scale:.{digits}f}]")
            conventions = json.dumps(r.get("conventions") or {}, indent=1, sort_keys=True, default=str)
            value = r.get("value")
            rows.append(
                "<tr>"
                f'<td class="text">{escape(r["metric"])}{" ★" if r.get("headline") else ""}</td>'
                f'<td data-sort="{"" if value is None else escape(repr(value))}">{escape(_format(r, None))}</td>'
                f"<td>{escape(ci_text)}</td>"
                f"<td>{escape(str(r.get('n', '')))}</td>"
                f'<td class="text"><details><summary>conventions</summary><pre>{escape(conventions)}</pre>'
                "</details></td>"
                "</tr>")
        parts.append("<table><thead><tr><th>metric</th><th>value</th><th>95% CI</th><th>n</th>"
                     "<th>conventions</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    parts.append('<p class="muted">★ headline metric. Values as in the leaderboard (percent for accuracy-like '
                 "metrics); raw values and all conventions are in each run's results.json.</p>")
    if figures:
        parts.append("<h2>Figures</h2>")
        for src, caption in figures:
            parts.append(f'<figure><img class="figure" src="{escape(src)}" alt="{escape(caption)}">'
                         f"<figcaption class=\"muted\">{escape(caption)}</figcaption></figure>")
    return _page(f"{name} — {title}", "\n".join(parts))


def _sample_counts(task: dict) -> str:
    """The task's samples left out and without a face, per group where any (``sample_counts``); "" when none."""
    c = task.get("sample_counts")
    if not c or not (c.get("skipped") or c.get("no_face")):
        return ""
    no_face = "not reported" if c.get("no_face") is None else str(c["no_face"])
    summary = f"{c['evaluated']} evaluated, {c['skipped']} left out (unreadable images), no face found on {no_face}"
    out = [f'<p class="counts">{escape(summary)}</p>']
    for attr, by in (c.get("by_group") or {}).items():
        if not any(v.get("skipped") or v.get("no_face") for v in by.values()):
            continue
        rows = "".join(f'<tr><td class="text">{escape(str(g))}</td><td>{v["evaluated"]}</td><td>{v["skipped"]}</td>'
                       f'<td>{"n/a" if v["no_face"] is None else v["no_face"]}</td></tr>' for g, v in by.items())
        out.append(f"<table><thead><tr><th>{escape(attr)}</th><th>evaluated</th><th>left out</th><th>no face</th>"
                   f"</tr></thead><tbody>{rows}</tbody></table>")
    return "\n".join(out)


def _comparison_section(out: Path, comparison: Sequence[tuple[str, str]]) -> str:
    """The cross-model figures as an index section ("" without any): each PNG copied to ``figures/models/``."""
    items = []
    for i, (caption, png) in enumerate(comparison):
        src = Path(png)
        if not src.is_file():
            continue
        dest = out / "figures" / "models" / f"{i:02d}-{task_slug(src.stem)}{src.suffix.lower()}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        items.append(f'<figure><img class="figure" src="figures/models/{escape(dest.name)}" alt="{escape(caption)}">'
                     f'<figcaption class="muted">{escape(caption)}</figcaption></figure>')
    return "<h2>Model comparison</h2>\n" + "\n".join(items) if items else ""


def write_site(runs: Sequence, out_dir: str | Path, figures: dict[str, list] | None = None,
               metrics="headline", strict: bool = False, title: str = "facebench leaderboard",
               boards: str = "", comparison: Sequence[tuple[str, str]] = ()) -> Path:
    """Write the static site to ``out_dir`` and return the path of ``index.html``.

    ``runs``: :func:`load_runs` output, results dicts, or run folder paths. ``figures``:
    ``{task name: [png paths]}``; the files are copied to ``figures/<task slug>/`` and embedded in
    the task's page. ``metrics`` / ``strict`` go to :func:`build_table`. ``boards``: HTML shown first on the
    index (the models x tasks tables of ``facebench report``). ``comparison``: (caption, PNG path) of the
    cross-model figures, copied to ``figures/models/`` and shown on the index after the boards.
    """
    runs = list(runs)
    if runs and all(isinstance(r, (str, Path)) for r in runs):
        runs = load_runs(runs)
    table = build_table(runs, metrics=metrics, strict=strict)
    out = Path(out_dir)
    (out / "tasks").mkdir(parents=True, exist_ok=True)
    names = _task_names(table)
    for task in (figures or {}):
        if task not in names:
            names.append(task)
    links = {name: f"tasks/{task_slug(name)}.html" for name in names}
    for name in names:
        rel = []
        for i, png in enumerate((figures or {}).get(name, [])):
            src = Path(png)
            if not src.is_file():
                continue
            dest_dir = out / "figures" / task_slug(name)
            dest_dir.mkdir(parents=True, exist_ok=True)
            dest = dest_dir / f"{i:02d}-{task_slug(src.stem)}{src.suffix.lower()}"
            shutil.copyfile(src, dest)
            rel.append((f"../figures/{task_slug(name)}/{dest.name}", figure_caption(src, name)))
        (out / links[name]).write_text(_task_page(name, table, rel, title), encoding="utf-8")
    (out / "leaderboard.csv").write_text(to_csv(table), encoding="utf-8")
    index = out / "index.html"
    index.write_text(_index(table, links, title, boards + _comparison_section(out, comparison)), encoding="utf-8")
    return index
