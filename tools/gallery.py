"""The README's figure gallery: real runs of the embedded demo, reported, a few PNGs picked.

    python tools/gallery.py docs/gallery [--models synth-cnn,fer-minixception,faceapi-expression]
                                         [--limit 300] [--bootstrap 200] [--figure-width auto]

Runs ``suites/demo.yaml`` (the tasks of :data:`TASKS`, ``--limit`` samples per split) with each model (models that
cannot be loaded here are left out, with the reason), builds ``facebench report`` over the runs (in ``--work``, or
a temporary folder), and copies the figures of :data:`PICKS` to ``OUT/<name>.png``. ``OUT/gallery.md`` holds the
Markdown to paste (one image per figure, a caption) and says when, on what machine and with which command and
versions it was made. Nothing is edited by hand: rerun the command to refresh the gallery.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TASKS = ("synth-closed-set", "synth-open-set-compound", "synth-cross-domain", "synth-fairness")
DEFAULT_MODELS = ("synth-cnn", "fer-minixception", "faceapi-expression")
#: gallery name -> (figure path inside the report folder, with {first} = the first run's folder; caption)
PICKS = {
    "forest": ("figures/models/forest.png", "Forest plot: each model's headline metric per task, 95% CIs"),
    "models_heatmap": ("figures/models/heatmap.png", "Models x tasks; colour = standing within each task"),
    "reliability_overlay": ("figures/models/reliability-synth-closed-set.png",
                            "Reliability curves of the models overlaid, ECE with CI in the legend"),
    "groups_side_by_side": ("figures/models/groups-synth-fairness.png",
                            "Per-group accuracy side by side, each model's gap in the legend"),
    "fairness_bars": ("figures/{first}/synth-fairness-group_bars.png",
                      "Fairness bars zoomed to the data, with CIs and the gap annotated"),
    "open_set_roc": ("figures/{first}/synth-open-set-compound-roc.png", "Open-set ROC with AUROC and CI"),
    "reliability": ("figures/{first}/synth-closed-set-reliability.png", "Reliability diagram with the ECE"),
    "confusion_matrix": ("figures/{first}/synth-closed-set-confusion_matrix.png", "Row-normalised confusion matrix"),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python tools/gallery.py", description=__doc__.splitlines()[0])
    p.add_argument("out", help="gallery folder (e.g. docs/gallery)")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated registered models")
    p.add_argument("--limit", type=int, default=300, help="samples per split (facebench run --limit)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples of the CIs")
    p.add_argument("--figure-width", choices=["auto", "single", "double"], default="auto")
    p.add_argument("--cache-dir", help="prediction store (default: facebench's)")
    p.add_argument("--work", help="keep the runs and the report here (default: a temporary folder, removed)")
    return p.parse_args(argv)


def run_models(args, runs_dir: Path) -> list[Path]:
    """One demo run per model that loads (the others reported on stderr); the run folders."""
    from facebench.runner import run_suite

    folders = []
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        out = runs_dir / model
        try:
            outcome = run_suite(REPO / "suites" / "demo.yaml", model, out=out, force=True, progress=False,
                                cache_dir=args.cache_dir, figures=args.figure_width, log=lambda m: None,
                                overrides={"limit": args.limit, "bootstrap": args.bootstrap, "tasks": list(TASKS)})
        except Exception as err:  # noqa: BLE001 - a model that cannot load here is left out, with the reason
            print(f"gallery: {model} left out: {type(err).__name__}: {err}", file=sys.stderr)
            continue
        print(f"gallery: {model} run, exit {outcome.exit_code}", file=sys.stderr)
        folders.append(out)
    return folders


def pick(report: Path, first: str, out: Path) -> list[tuple[str, str]]:
    """Copy :data:`PICKS` from the report folder into ``out``; (file name, caption) of those found."""
    picked = []
    for name, (rel, caption) in PICKS.items():
        src = report / rel.format(first=first)
        if src.is_file():
            shutil.copyfile(src, out / f"{name}.png")
            picked.append((f"{name}.png", caption))
        else:
            print(f"gallery: {rel.format(first=first)} not drawn; left out", file=sys.stderr)
    return picked


def cpu_name() -> str:
    """The processor's model name (Linux: /proc/cpuinfo), else what ``platform`` says, else "CPU"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def markdown(picked: list[tuple[str, str]], out: Path, args, models: list[str]) -> str:
    """The snippet for the README: a provenance line, then each image with its caption."""
    from facebench import __version__

    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.system()} {platform.machine()} ({cpu_name()}, {os.cpu_count()} cores), Python {platform.python_version()}"
    lines = [f"Made {when} on {machine} by `python tools/gallery.py {out.as_posix()} --models {','.join(models)} "
             f"--limit {args.limit} --bootstrap {args.bootstrap}` (facebench {__version__}): demo suite tasks "
             f"{', '.join(TASKS)}, {args.limit} samples per split.", ""]
    for name, caption in picked:
        lines += [f"![{caption}]({out.as_posix()}/{name})", f"*{caption}*", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    from facebench.report.build import build_report
    from facebench.report.tables import load_runs

    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="facebench-gallery-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        folders = run_models(args, work / "runs")
        if not folders:
            print("gallery: no model could be run; see the reasons above", file=sys.stderr)
            return 2
        report = build_report([str(f) for f in folders], work / "report", figure_width=args.figure_width)
        first = re_label(load_runs([str(folders[0])])[0]["label"])
        picked = pick(Path(report), first, out)
    (out / "gallery.md").write_text(markdown(picked, out, args, [f.name for f in folders]) + "\n", encoding="utf-8")
    print(f"gallery: {len(picked)} figures and gallery.md in {out}", file=sys.stderr)
    return 0


def re_label(label: str) -> str:
    """A run label as ``facebench report`` names its figure folder (``build._safe``)."""
    from facebench.report.build import _safe

    return _safe(label)


if __name__ == "__main__":
    sys.exit(main())
