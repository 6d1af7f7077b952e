"""Closed-set face identification (1:N): probes searched in a gallery by cosine similarity of the features.

One split holds probes and gallery together, told apart by the ``role`` attribute its loader sets
(``probe`` | ``gallery`` | ``distractor``; scface, tinyface); ``subject`` is each image's identity
(empty for a distractor). The gallery is every ``gallery`` and ``distractor`` image. Each probe's rank is
that of its best-scoring mate (:mod:`facebench.metrics.identification`: ties with a non-mate count
against the probe by default); a probe whose identity has no gallery image cannot be ranked, is left out
of the CMC (as the TinyFace helper does) and is counted (``probes_without_mate``, with a warning).

Records: ``rank<k>`` = CMC(k) for each k of ``ranks`` (default 1, 5, 10, 20; rank1 is the headline) with
percentile bootstrap CIs resampling probes; with ``group_by`` (an attribute of the probes, e.g. SCface's
``distance``): ``rank1[<attr>=<value>]`` per group and their unweighted mean ``rank1[<attr>_mean]`` (the
LRFR convention of a rank-1 per distance and their average; a headline). ``flip: true`` adds the
embedding of the mirrored image before L2 normalisation (the mirrored split is predicted once, stored).
Details: the CMC curve up to the largest rank asked (at least 20), gallery and probe counts, per-group rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facebench.errors import ConfigError, MetricInputError
from facebench.metrics import bootstrap as bs
from facebench.metrics import identification as im
from facebench.protocols.base import EvalContext, MetricRecord, Protocol, TaskResult, choice, flipped_ref
from facebench.records import Requirements


class IdentificationProtocol(Protocol):
    """Closed-set identification: probes vs a gallery (with distractors), CMC rank-k, rank-1 per group, bootstrap CIs"""

    name = "identification"
    version = "1"

    @dataclass
    class Params:
        ranks: list = field(default_factory=lambda: list(im.DEFAULT_RANKS))
        group_by: str | None = None
        flip: bool = False
        ties: str = choice("pessimistic", im.TIES)

    ROLE_NEEDS = {"flipped": {"attributes"}}

    def __init__(self, **params):
        super().__init__(**params)
        ranks = self.params.ranks
        if not ranks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ranks) \
                or len(set(ranks)) != len(ranks):
            raise ConfigError(f"Protocol 'identification': ranks must be a list of distinct integers >= 1, e.g. "
                              f"[1, 5, 10, 20]; got {ranks!r}.")
        self.params.ranks = sorted(ranks)

    def requirements(self, task=None) -> Requirements:
        names = ("subject", "role") + ((self.params.group_by,) if self.params.group_by else ())
        return Requirements(head=False, features=True, labels=False, attributes=True, attribute_names=names)

    def requires(self, task) -> dict:
        if not self.params.flip:
            return {}
        return {"flipped": flipped_ref(task, "identification")}

    def _features(self, ctx: EvalContext) -> np.ndarray:
        emb = np.asarray(ctx.predictions.outputs["features"], dtype=np.float64)
        if self.params.flip:
            flipped = ctx.extras["flipped"].predictions.align(ctx.dataset.ids)
            emb = im.l2_rows(emb) + im.l2_rows(np.asarray(flipped.outputs["features"], dtype=np.float64))
        return im.l2_rows(emb)

    def evaluate(self, ctx: EvalContext) -> TaskResult:
        p, ds = self.params, ctx.dataset
        roles, subjects = _roles_and_subjects(ds)
        probe, gallery = roles == "probe", roles != "probe"
        emb = self._features(ctx)
        ranks = im.search_ranks(emb[probe], subjects[probe], emb[gallery], subjects[gallery], ties=p.ties)
        ranked = ranks > 0
        if not ranked.any():
            raise MetricInputError(f"{ds.name}/{ds.split}: none of the {int(probe.sum())} probes has a mate in the "
                                   f"gallery (no gallery image of its subject); check the split and its subjects")
        conv = self._conventions(ctx, roles, ranks)
        records = self._rank_records(ctx, ranks, conv)
        missing = int((~ranked).sum())
        records.append(MetricRecord("probes_without_mate", missing, None, int(probe.sum()),
                                    {**conv, "rule": "probes whose subject has no gallery image: not ranked, left "
                                                     "out of the CMC"}, higher_is_better=False, unit="count"))
        warnings = [f"{ds.name}/{ds.split}: {missing} of {int(probe.sum())} probes have no mate in the gallery "
                    f"and are left out of the CMC"] if missing else []
        details = {"cmc": _curve(ranks, max(20, p.ranks[-1])), "counts": conv["counts"]}
        if p.group_by:
            group_records, details["groups"] = self._groups(ctx, ranks, np.asarray(ds.attributes[p.group_by])[probe],
                                                            conv)
            records += group_records
        return TaskResult(records, details, warnings)

    def _conventions(self, ctx: EvalContext, roles: np.ndarray, ranks: np.ndarray) -> dict:
        ds, ties = ctx.dataset, self.params.ties
        counts = {"probes": int((roles == "probe").sum()), "probes_ranked": int((ranks > 0).sum()),
                  "gallery": int((roles == "gallery").sum()), "distractors": int((roles == "distractor").sum())}
        embedding = ("L2-normalise(f(x)/|f(x)| + f(hflip x)/|f(hflip x)|)" if self.params.flip
                     else "L2-normalise(f(x))")
        return {"score": "cosine similarity of L2-normalised features",
                "search": "closed set; gallery = gallery + distractor images", "embedding": embedding,
                "ties": f"{ties}: a non-mate scoring equal to the best mate ranks "
                        f"{'above' if ties == 'pessimistic' else 'below'} it",
                "counts": counts, "dataset": f"{ds.name}/{ds.split}"}

    def _rank_records(self, ctx: EvalContext, ranks: np.ndarray, conv: dict) -> list[MetricRecord]:
        """``rank<k>`` for each k, over the ranked probes, with percentile bootstrap CIs over probes."""
        hits = im.rank_hits(ranks, self.params.ranks)
        boot = _boot_conventions(ctx)
        records = []
        for j, k in enumerate(self.params.ranks):
            records.append(MetricRecord(f"rank{k}", float(hits[:, j].mean()), _ci(ctx, hits[:, j]), len(hits),
                                        {**conv, **boot, "definition": f"share of ranked probes with a mate in the "
                                                                       f"top {k} (CMC at rank {k})"},
                                        headline=k == 1, higher_is_better=True, unit="fraction"))
        return records

    def _groups(self, ctx: EvalContext, ranks: np.ndarray, groups: np.ndarray, conv: dict) -> tuple[list, list]:
        """Rank-1 per value of ``group_by`` among the ranked probes, and the unweighted mean over groups."""
        attr, keep = self.params.group_by, ranks > 0
        values = np.asarray(groups, dtype=str)[keep]
        hits = (ranks[keep] == 1).astype(np.float64)
        records, rows = [], []
        gconv = {**conv, **_boot_conventions(ctx), "group_by": attr}
        for g in sorted(set(values.tolist())):
            mine = hits[values == g]
            records.append(MetricRecord(f"rank1[{attr}={g}]", float(mine.mean()), _ci(ctx, mine), len(mine), gconv,
                                        higher_is_better=True, unit="fraction"))
            rows.append({"group": g, "probes_ranked": int(len(mine)), "rank1": float(mine.mean())})
        mean = float(np.mean([r["rank1"] for r in rows]))
        records.append(MetricRecord(f"rank1[{attr}_mean]", mean, None, int(len(hits)),
                                    {**gconv, "definition": f"unweighted mean of the rank-1 of each {attr}",
                                     "groups": [r["group"] for r in rows]},
                                    headline=True, higher_is_better=True, unit="fraction"))
        return records, rows


def _roles_and_subjects(ds) -> tuple[np.ndarray, np.ndarray]:
    """The split's ``role`` and ``subject`` attributes, checked: known roles, at least one probe and one gallery
    item, a subject for every probe and gallery image."""
    missing = [a for a in ("role", "subject") if a not in ds.attributes]
    if missing:
        raise MetricInputError(f"{ds.name}/{ds.split} has no {' / '.join(missing)} attribute; identification needs a "
                               f"split whose loader marks each image probe, gallery or distractor (scface, tinyface)")
    roles = np.asarray(ds.attributes["role"], dtype=str)
    subjects = np.asarray(ds.attributes["subject"], dtype=str)
    unknown = sorted(set(roles.tolist()) - {"probe", "gallery", "distractor"})
    if unknown:
        raise MetricInputError(f"{ds.name}/{ds.split}: roles {unknown} are unknown; use probe, gallery or distractor")
    if not (roles == "probe").any() or (roles == "probe").all():
        raise MetricInputError(f"{ds.name}/{ds.split}: {int((roles == 'probe').sum())} probes and "
                               f"{int((roles != 'probe').sum())} gallery images; identification needs both")
    unnamed = (subjects == "") & (roles != "distractor")
    if unnamed.any():
        raise MetricInputError(f"{ds.name}/{ds.split}: {int(unnamed.sum())} probe or gallery images have no subject "
                               f"(first: {ds.ids[unnamed][0]}); only distractors may have none")
    return roles, subjects


def _boot_conventions(ctx: EvalContext) -> dict:
    return {"bootstrap": f"percentile,resamples={ctx.n_resamples},unit=probe,seed={ctx.seed}",
            "confidence": ctx.confidence} if ctx.n_resamples > 0 else {}


def _ci(ctx: EvalContext, values: np.ndarray):
    if ctx.n_resamples <= 0 or not len(values):
        return None
    samples = bs.bootstrap_sample_means(values, n_resamples=ctx.n_resamples, seed=ctx.seed)
    return bs.percentile_interval(samples, ctx.confidence)


def _curve(ranks: np.ndarray, max_rank: int) -> list:
    return [float(x) for x in im.cmc_curve(ranks, max_rank)]
