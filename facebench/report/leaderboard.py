"""Markdown leaderboards from result records."""

from __future__ import annotations

import re
from typing import Iterable

from facebench.records import PERCENT_DISPLAY


def display_scale(record: dict) -> tuple[float, int]:
    """(scale, decimals) for printing a record, from its own ``unit``: fractions as percentages with 2
    decimals, values already in percent with 2, counts as integers, every other unit (or none recorded)
    as is with 4."""
    unit = record.get("unit") if isinstance(record, dict) else None
    if unit in PERCENT_DISPLAY:
        return 100.0, 2
    if unit == "count":
        return 1.0, 0
    return (1.0, 2) if unit == "percent" else (1.0, 4)


def format_value(record: dict, with_ci: bool = True) -> str:
    value = record.get("value")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "n/a"  # absent, or not a number (a hand-edited results.json)
    scale, digits = display_scale(record)
    text = f"{value * scale:.{digits}f}"
    ci = record.get("ci")
    if with_ci and isinstance(ci, (list, tuple)) and len(ci) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in ci):
        text += f" [{ci[0] * scale:.{digits}f}, {ci[1] * scale:.{digits}f}]"
    return text


_MD_SPECIAL = {"\\": "\\\\", "`": "\\`", "|": "\\|", "[": "\\[", "]": "\\]", "<": "&lt;", ">": "&gt;",
               "&": "&amp;", "\n": " ", "\r": " "}
_MD_NUMBER = re.compile(r"[-+0-9.,%±\[\] ]*|n/a|–")  # numbers and their CIs, e.g. "81.05 [79.25, 82.75]"


def md_escape(text) -> str:
    """Text for one Markdown table cell, heading or list item: ``\\ ` | [ ]`` are backslash-escaped,
    ``< > &`` become HTML entities (no raw HTML, links or code spans get through), line breaks become
    spaces. Cells that are only numbers with their CI brackets pass unchanged (they stay readable)."""
    text = str(text)
    if _MD_NUMBER.fullmatch(text):
        return text
    return "".join(_MD_SPECIAL.get(ch, ch) for ch in text)


def _table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    """A Markdown table; every header and cell goes through ``md_escape``."""
    rows = [[md_escape(c) for c in r] for r in rows]
    header = [md_escape(h) for h in header]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def leaderboard_markdown(results: dict) -> str:
    """One headline table per protocol (a row per task), then each task's detail tables."""
    model = results["model"]["name"]
    records = results["records"]
    lines = [f"# {md_escape(results['suite']['name'])} — {md_escape(model)}", ""]
    partial = results.get("partial")
    if partial:
        cut = "; ".join(f"{k} {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in partial.items())
        lines += [f"**Partial run** ({md_escape(cut)}): not comparable with a full run of the suite.", ""]
    protocols: list[str] = []
    for task in results["tasks"]:
        if task["protocol"] not in protocols:
            protocols.append(task["protocol"])
    for protocol in protocols:
        tasks = [t for t in results["tasks"] if t["protocol"] == protocol]
        names = {t["name"] for t in tasks}
        mine = [r for r in records if r["task"] in names]
        columns: list[str] = []
        for r in mine:
            if r["headline"] and r["metric"] not in columns:
                columns.append(r["metric"])
        other = ["nll"] + sorted({r["metric"] for r in mine if r["metric"].startswith("ece[")})
        columns += [m for m in other if any(r["metric"] == m for r in mine)]
        header = ["task", "dataset / split", "n"] + [_column_name(m) for m in columns]
        rows = []
        for task in tasks:
            by_metric = {r["metric"]: r for r in mine if r["task"] == task["name"]}
            if task["status"] != "ok":
                rows.append([task["name"], f"{task['dataset']} / {task['split']}", "-",
                             f"{task['status']}: {task.get('reason', '')}"] + [""] * max(len(columns) - 1, 0))
                continue
            rows.append([task["name"], f"{task['dataset']} / {task['split']}", str(task.get("n", ""))]
                        + [format_value(by_metric[m]) if m in by_metric else "" for m in columns])
        lines += [f"## {md_escape(protocol)}", ""] + _table(header, rows) + [""]
    lines += ["Percentages (OOD metrics as fractions) with 95% bootstrap percentile CIs in brackets; conventions "
              "are in results.json.", ""]
    lines += sample_count_tables(results["tasks"])
    for task in results["tasks"]:
        if task["status"] != "ok":
            continue
        render = DETAILS.get(task["protocol"])
        if render is not None:
            lines += render(task, [r for r in records if r["task"] == task["name"]])
    return "\n".join(lines)


def _count(value, of: int | None = None) -> str:
    if value is None:
        return "n/a"
    return f"{value} ({100 * value / of:.1f}%)" if of and value else str(value)


def sample_count_tables(tasks: list[dict]) -> list[str]:
    """Tasks with samples left out (unreadable images) or without a face: their counts, then per group for
    the attributes where some group has any (``sample_counts`` in results.json); nothing when none has."""
    rows, groups = [], []
    for task in tasks:
        c = task.get("sample_counts")
        if not c or not (c["skipped"] or c["no_face"]):
            continue
        rows.append([task["name"], str(c["evaluated"]), _count(c["skipped"], c["evaluated"] + c["skipped"]),
                     _count(c["no_face"], c["evaluated"])])
        for attr, by in (c.get("by_group") or {}).items():
            if any(v["skipped"] or v["no_face"] for v in by.values()):
                groups += [f"### {md_escape(task['name'])}: left out and without a face per {md_escape(attr)}", ""]
                groups += _table([attr, "evaluated", "left out (unreadable)", "no face found"],
                                 [[name, str(v["evaluated"]), _count(v["skipped"], v["evaluated"] + v["skipped"]),
                                   _count(v["no_face"], v["evaluated"])] for name, v in by.items()]) + [""]
    if not rows:
        return []
    head = ["## Samples left out or without a face", "",
            "Left out: image files that cannot be read (`on_bad_image: skip`), not evaluated. No face found: "
            "evaluated with the model's fallback (whole image or its default crop).", ""]
    return head + _table(["task", "evaluated", "left out (unreadable)", "no face found"], rows) + [""] + groups


def _per_class(task: dict, records: list[dict]) -> list[str]:
    per_class = task.get("details", {}).get("per_class")
    if not per_class:
        return []
    recall = {r["metric"][7:-1]: r for r in records if r["metric"].startswith("recall[")}
    extra = "train_count" in per_class[0]
    header = ["class", "support", "recall % [CI]"] + (["train count", "group"] if extra else ["precision %"])
    rows = []
    for row in per_class:
        name = row["class"]
        support = row.get("support", row.get("test_count"))
        cells = [name, str(support), format_value(recall[name]) if name in recall else "n/a"]
        if extra:
            cells += [str(row.get("train_count")), str(row.get("group"))]
        else:
            cells.append("n/a" if row.get("precision") is None else f"{row['precision'] * 100:.2f}")
        rows.append(cells)
    return [f"### {md_escape(task['name'])}: per class", ""] + _table(header, rows) + [""]


def _imbalanced(task: dict, records: list[dict]) -> list[str]:
    lines = _per_class(task, records)
    resampled = task.get("details", {}).get("resampled") or []
    if resampled:
        rows = [[f"{r['factor']:g}", str(r["n"]), f"{100 * r['accuracy']:.2f}", f"{100 * r['mean_class_accuracy']:.2f}",
                 f"{100 * r['gap']:.2f}"] for r in resampled]
        lines += [f"### {md_escape(task['name'])}: re-sampled test sets", ""]
        lines += _table(["imbalance factor", "n", "overall %", "mean %", "gap (points)"], rows) + [""]
    return lines


def _open_set(task: dict, records: list[dict]) -> list[str]:
    table = task.get("details", {}).get("table")
    if not table:
        return []
    keys = [k for k in table[0] if k not in ("open_class", "n_known", "n_unknown")]
    keys = [k for k in ("auroc", "fpr@tpr95[pos=known,rule=interp]", "fpr@tpr95[pos=unknown,rule=first]", "oscr",
                        "closed_set_accuracy") if k in keys]
    rows = [[str(r["open_class"]), str(r.get("n_known", "")), str(r.get("n_unknown", ""))]
            + [(f"{100 * r[k]:.2f}" if k == "closed_set_accuracy" else f"{r[k]:.3f}") for k in keys] for r in table]
    header = ["open class", "n known", "n unknown"] + [_column_name(k) for k in keys]
    return [f"### {md_escape(task['name'])}: leave-one-class-out", ""] + _table(header, rows) + [""]


def _cross_domain(task: dict, records: list[dict]) -> list[str]:
    details = task.get("details", {})
    columns = details.get("columns")
    if not columns:
        return []
    head = [c["column"] + (" (source)" if c["role"] == "source" else "") for c in columns] + ["Mean"]
    cells = [f"{100 * c['value']:.2f}" for c in columns] + [f"{100 * details['mean']:.2f}"]
    lines = [f"### {md_escape(task['name'])}: {md_escape(details.get('metric', 'accuracy'))} % per column", ""] + _table(head, [cells])
    missing = [f"{c['column']}: model lacks {c['classes_missing_in_model']}" for c in columns
               if c["classes_missing_in_model"]]
    missing += [f"{c['column']}: dataset lacks {c['model_classes_missing_in_dataset']}" for c in columns
                if c["model_classes_missing_in_dataset"]]
    if missing:
        lines += ["", "Classes missing on one side: " + md_escape("; ".join(missing)) + "."]
    if task.get("skipped_extra_splits"):
        lines += ["", "Left out (data absent): " + md_escape("; ".join(task["skipped_extra_splits"])) + "."]
    return lines + [""]


def _fairness(task: dict, records: list[dict]) -> list[str]:
    details = task.get("details", {})
    groups = details.get("groups")
    if not groups:
        return []
    metric = details.get("metric", "accuracy")
    by_name = {r["metric"]: r for r in records}
    unit = by_name.get(f"{metric}[overall]", {}).get("unit")  # a group without its record: the overall's unit
    rows = [[str(g["group"]), str(g["n"]), format_value(by_name.get(f"{metric}[group={g['group']}]",
                                                                      {"metric": metric, "value": g["value"],
                                                                       "unit": unit}))]
            for g in sorted(groups, key=lambda g: _natural(str(g["group"])))]
    title = f"### {md_escape(task['name'])}: {md_escape(metric)} by {md_escape(' x '.join(details.get('by', [])))}"
    return [title, ""] + _table(["group", "n", f"{_column_name(metric)} [CI]"], rows) + [""]


def _natural(text: str) -> list:
    """Sort key that orders numbers by value: '3-9' before '10-19'."""
    import re

    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text) if t]


def _verification(task: dict, records: list[dict]) -> list[str]:
    lines = _verification_folds(task, records)
    groups = task.get("details", {}).get("groups")
    if not groups or "fmr" not in groups:
        return lines
    by_name = {r["metric"]: r for r in records}
    rows = []
    for g in sorted(groups["accuracy"]):
        acc = by_name.get(f"accuracy[10fold,insightface,group={g}]")
        rows.append([g, format_value(acc) if acc else "", format_value(by_name[f"fmr[group={g}]"]),
                     format_value(by_name[f"fnmr[group={g}]"])])
    header = ["group", "accuracy % (per-group thresholds)", "FMR (global threshold)", "FNMR (global threshold)"]
    return lines + [f"### {md_escape(task['name'])}: per group", ""] + _table(header, rows) + [""]


def _verification_folds(task: dict, records: list[dict]) -> list[str]:
    """Per fold: pairs listed / evaluated / missing (genuine + impostor) and the held-out accuracy; then
    mean +- std over the folds evaluated and the coverage sentence."""
    details = task.get("details", {})
    folds = details.get("folds")
    if not folds:
        return []
    rows = [[str(r["fold"]), str(r["listed"]), str(r["evaluated"]),
             f"{r['missing']} ({r['genuine_missing']} + {r['impostor_missing']})",
             f"{100 * r['accuracy']:.2f}" if r.get("accuracy") is not None else r["status"]] for r in folds]
    header = ["fold", "pairs listed", "evaluated", "missing (genuine + impostor)", "accuracy % (insightface)"]
    by_name = {r["metric"]: r for r in records}
    mean, std = by_name.get("accuracy[10fold,insightface]"), by_name.get("accuracy_std[10fold,insightface]")
    lines = [f"### {md_escape(task['name'])}: per fold", ""] + _table(header, rows) + [""]
    if mean and std and mean.get("value") is not None and std.get("value") is not None:
        lines += [f"Accuracy (insightface): {100 * mean['value']:.2f} ± {100 * std['value']:.2f} % "
                  f"(mean ± std over {len([r for r in folds if r['status'] == 'evaluated'])} folds).", ""]
    if details.get("coverage", {}).get("summary"):
        lines += [md_escape(details["coverage"]["summary"]) + ".", ""]
    return lines


def _label_free(task: dict, records: list[dict]) -> list[str]:
    details = task.get("details", {})
    lines = []
    parts = [(f"auroc ({det})", part) for det, part in (details.get("auroc") or {}).items()]
    parts += [("accuracy", details["accuracy"])] if details.get("accuracy") else []
    for target, part in parts:
        if not part or not part.get("table"):
            continue
        lo, hi = part.get("truth_range", [None, None])
        rows = []
        for r in part["table"]:
            ci = r.get("mae_ci")
            mae = f"{r['mae']:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci and None not in ci else "")
            rows.append([r["indicator"], r["map"], mae] + [("n/a" if r[k] is None or r[k] != r[k] else f"{r[k]:.3f}")
                                                          for k in ("rmse", "r2", "pearson", "spearman", "kendall")])
        n_sets = sum(part.get("families", {}).values())
        lines += [f"### {md_escape(task['name'])}: predicting {md_escape(target)} ({n_sets} test sets, truth {lo:.3f} to {hi:.3f}; "
                  f"maps fitted leave-one-family-out)", ""]
        lines += _table(["indicator", "map", "MAE [CI]", "RMSE", "R2", "Pearson", "Spearman", "Kendall"], rows) + [""]
    return lines


def _ood_estimate(task: dict, records: list[dict]) -> list[str]:
    summary = task.get("details", {}).get("summary")
    return [f"### {md_escape(task['name'])}: label-free OOD estimate", "", md_escape(summary), ""] if summary else []


DETAILS = {"ood_estimate": _ood_estimate, "label_free": _label_free, "fairness": _fairness, "verification": _verification, "closed_set": _per_class, "imbalanced": _imbalanced, "open_set": _open_set,
           "cross_domain": _cross_domain}


BASE_NAMES = {"accuracy": "accuracy %", "mean_class_accuracy": "mean class acc. %", "macro_f1": "macro-F1 %",
              "nll": "NLL", "auroc": "AUROC", "oscr": "OSCR", "closed_set_accuracy": "closed-set acc. %",
              "gap": "gap (points)", "estimated_auroc": "AUROC (estimated)",
              "estimated_ood_fraction": "OOD fraction (estimated)"}


def _column_name(metric: str) -> str:
    """Readable column titles: ``fpr@tpr95[pos=known,rule=interp]`` -> ``FPR@95 (known+, interp)``,
    ``accuracy[target=blur]`` -> ``blur %``, ``auroc[mean]`` -> ``AUROC (mean)``."""
    if metric.startswith("ece["):
        return "ECE"
    base, _, tags = metric.partition("[")
    tags = [t for t in tags.rstrip("]").split(",") if t] if tags else []
    if base.startswith("fpr@tpr"):
        title = f"FPR@{base[len('fpr@tpr'):]}"
    else:
        title = BASE_NAMES.get(base, base)
    parts = []
    for tag in tags:
        key, _, value = tag.partition("=")
        if key == "pos":
            parts.append(f"{value}+")
        elif key in ("target", "source") and base in ("accuracy", "mean_class_accuracy"):
            suffix = " (source)" if key == "source" else ""
            return f"{value}{suffix} %" if base == "accuracy" else f"{value}{suffix} mean acc. %"
        elif key in ("rule", "method"):
            parts.append(value)
        elif key == "accuracy-mean_class_accuracy":
            continue
        elif tag == "mean" and base in ("accuracy", "mean_class_accuracy") and not parts:
            return "Mean %" if base == "accuracy" else "Mean (mean acc.) %"
        else:
            parts.append(tag)
    return f"{title} ({', '.join(parts)})" if parts else title
