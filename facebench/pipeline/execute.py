"""Step 2, execute: the engine fills the prediction store, one inference per dataset split.

Each ``SplitWork`` that some task reads predictions of is predicted once (or its stored predictions are
reused; see ``facebench.engine.inference``). A file that passed the header scan and still fails to decode
is handled by the ``on_bad_image`` policy (``facebench.data.scan.predict_screened``). Nothing is evaluated here.
"""

from __future__ import annotations

import time
from typing import Callable

from facebench.data.scan import predict_screened
from facebench.engine.inference import InferenceSettings, run_inference
from facebench.engine.progress import RunProgress
from facebench.pipeline.plan import SplitWork


def inference_settings(defaults: dict, progress: bool) -> InferenceSettings:
    """The engine's settings from the suite's (overridden) defaults."""
    return InferenceSettings(batch_size=defaults["batch_size"], device=defaults["device"], amp=defaults["amp"],
                             num_workers=defaults["num_workers"], shard_size=defaults["shard_size"],
                             decode_cache=defaults["decode_cache"], channels_last=defaults["channels_last"],
                             compile=defaults["compile"], prefetch=defaults["prefetch"], progress=progress)


def execute(work: dict[str, SplitWork], adapter, store, settings: InferenceSettings, on_bad_image: str,
            log: Callable[[str], None]) -> None:
    """Predict every split that some task reads predictions of; fills ``preds``, ``report`` and ``load_s``.
    With more than one split, a line per finished split with the run's overall progress and ETA
    (``engine.progress.RunProgress``)."""
    units = [unit for unit in work.values() if unit.predictions]
    sizes = [_work(unit) for unit in units]
    overall = RunProgress(sizes, settings.progress)
    try:
        for unit, (rows, _) in zip(units, sizes):
            _execute_unit(unit, work, adapter, store, settings, on_bad_image, log)
            r = unit.report
            overall.split_done(f"{unit.dataset.name}/{unit.dataset.split}", rows, r.computed_samples, unit.load_s,
                               "read from the store" if r.reused else "")
    finally:
        overall.close()


def _work(unit: SplitWork) -> tuple[int, str]:
    """What a split computes, for the run's ETA, as ``(rows, unit)``: its images, or for an attacked split its
    pairs (``rows: pairs``, the verification form) or its images, attacked."""
    if "attack" not in unit.ref.dataset_args:
        return len(unit.dataset), "img"
    from facebench.data.attack_spec import parse_attack

    if parse_attack(unit.ref.dataset_args["attack"])["rows"] == "pairs" and unit.dataset.pairs is not None:
        return len(unit.dataset.pairs["a"]), "attacked pairs"
    return len(unit.dataset), "attacked img"


def _execute_unit(unit: SplitWork, work: dict[str, SplitWork], adapter, store, settings: InferenceSettings,
                  on_bad_image: str, log: Callable[[str], None]) -> None:
    """One split: detected, attacked or plainly predicted (see :func:`execute`)."""
    t0 = time.perf_counter()
    if "detector" in unit.ref.dataset_args:
        unit.dataset, unit.detection = _detect(unit, store, settings, log)
    if "attack" in unit.ref.dataset_args:  # adversarial inputs made with the model (pipeline.attack_stage)
        from facebench.pipeline.attack_stage import AttackRun, attacked_split

        unit.dataset, unit.preds, unit.report = attacked_split(unit, adapter, AttackRun(store, settings, work, log))
        unit.load_s = time.perf_counter() - t0
        return

    def predict(dataset):
        return run_inference(adapter, dataset, store, heads=tuple(sorted(unit.heads)), features=unit.features,
                             settings=settings)

    try:
        unit.dataset, unit.bad_images, (unit.preds, unit.report) = predict_screened(
            predict, unit.dataset, unit.bad_images, on_bad_image, log)
    except KeyboardInterrupt:
        log("interrupted: predictions computed so far are kept in the store; run again to resume")
        raise
    if unit.report.reused:
        log(f"{unit.dataset.name}/{unit.dataset.split}: reused stored predictions ({unit.report.key})")
    unit.load_s = time.perf_counter() - t0


def _detect(unit: SplitWork, store, settings: InferenceSettings, log: Callable[[str], None]):
    """The split cropped to the faces its declared detector finds (the detector's outputs through the store)."""
    from facebench.pipeline.detect import detected_split, parse_detector

    def predict(detector, dataset):
        preds, report = run_inference(detector, dataset, store, heads=(detector.default_head,), features=False,
                                      settings=settings)
        if report.reused:
            log(f"{dataset.name}/{dataset.split}: reused the stored detections of {detector.name} ({report.key})")
        return preds

    return detected_split(unit.dataset, parse_detector(unit.ref.dataset_args["detector"]), predict, log)
