"""Markdown leaderboards from result records."""

from __future__ import annotations

from typing import Iterable

PERCENT_METRICS = ("accuracy", "mean_class_accuracy", "macro_f1", "recall[", "precision[", "mean_attribute_accuracy", "cs@")


def _is_percent(metric: str) -> bool:
    return metric.startswith(PERCENT_METRICS)


def format_value(record: dict, with_ci: bool = True) -> str:
    value = record.get("value")
    if value is None:
        return "n/a"
    scale, digits = (100.0, 2) if _is_percent(record["metric"]) else (1.0, 4)
    text = f"{value * scale:.{digits}f}"
    ci = record.get("ci")
    if with_ci and ci and ci[0] is not None and ci[1] is not None:
        text += f" [{ci[0] * scale:.{digits}f}, {ci[1] * scale:.{digits}f}]"
    return text


def _table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    rows = list(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def leaderboard_markdown(results: dict) -> str:
    """Headline table (one row per task) followed by per-class tables."""
    model = results["model"]["name"]
    records = results["records"]
    lines = [f"# {results['suite']['name']} — {model}", ""]
    headline_metrics: list[str] = []
    for r in records:
        if r["headline"] and r["metric"] not in headline_metrics:
            headline_metrics.append(r["metric"])
    other = ["nll"] + sorted({r["metric"] for r in records if r["metric"].startswith("ece[")})
    columns = headline_metrics + [m for m in other if any(r["metric"] == m for r in records)]
    header = ["task", "dataset / split", "n"] + [_column_name(m) for m in columns]
    rows = []
    for task in results["tasks"]:
        by_metric = {r["metric"]: r for r in records if r["task"] == task["name"]}
        if task["status"] != "ok":
            rows.append([task["name"], f"{task['dataset']} / {task['split']}", "-",
                         f"{task['status']}: {task.get('reason', '')}"] + [""] * (len(columns) - 1))
            continue
        n = next((str(r["n"]) for r in by_metric.values() if r["headline"]), "")
        rows.append([task["name"], f"{task['dataset']} / {task['split']}", n]
                    + [format_value(by_metric[m]) if m in by_metric else "" for m in columns])
    lines += _table(header, rows)
    lines += ["", "Percentages with 95% bootstrap percentile CIs in brackets (see results.json for conventions).", ""]
    for task in results["tasks"]:
        per_class = task.get("details", {}).get("per_class")
        if task["status"] != "ok" or not per_class:
            continue
        recall = {r["metric"][7:-1]: r for r in records if r["task"] == task["name"] and r["metric"].startswith("recall[")}
        lines += [f"## {task['name']}: per class", ""]
        rows = [[row["class"], str(row["support"]),
                 format_value(recall[row["class"]]) if row["class"] in recall else "n/a",
                 "n/a" if row["precision"] is None else f"{row['precision'] * 100:.2f}"] for row in per_class]
        lines += _table(["class", "support", "recall % [CI]", "precision %"], rows)
        lines.append("")
    return "\n".join(lines)


def _column_name(metric: str) -> str:
    names = {"accuracy": "accuracy %", "mean_class_accuracy": "mean class acc. %", "macro_f1": "macro-F1 %",
             "nll": "NLL"}
    if metric.startswith("ece["):
        return "ECE"
    return names.get(metric, metric)
