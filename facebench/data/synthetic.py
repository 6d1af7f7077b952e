"""The embedded synthetic face set (``synth``): rendered on the fly by ``facebench.synth``, no files.

``load`` draws a split's labels, ids and attributes at once (cheap) and renders its pixels only when they
are first read (``LazyImages``): a run whose predictions are all in the store renders nothing, since a
generated split's fingerprint is its generator-versioned tag."""

from __future__ import annotations

import numpy as np

from facebench.data.dataset import Dataset, DatasetLoader
from facebench.data.lazy import LazyImages
from facebench.errors import ConfigError, did_you_mean

DEFAULT_SIZES = {"train": 10000, "val": 2000, "test": 2000}


class SynthFaces(DatasetLoader):
    """Embedded procedural synthetic faces (7 basic + compound expressions, groups, domains); no download"""

    name = "synth"
    capabilities = frozenset({"labels", "attributes"})
    attribute_names = frozenset({"skin_tone", "face_shape", "domain"})

    @property
    def label_space(self) -> tuple[str, ...]:  # basic or compound expressions (option `classes`)
        from facebench.synth import generator

        return generator.class_names(self.classes)

    description = __doc__
    citation = "facebench embedded synthetic faces (facebench.synth.generator)"
    license = "same as facebench"
    how_to_get = "built in: rendered deterministically on first use"
    layout = "  (none: images are rendered in memory from a seed)"
    splits = ("train", "val", "test")
    needs_files = False

    def __init__(self, path=None, data_root=None, *, n: int | None = None, seed: int = 0, domain: str = "clean",
                 classes: str = "basic", imbalance: float = 4.0, severity: float = 1.0):
        from facebench.synth import generator

        super().__init__(None, None, n=n, seed=seed, domain=domain, classes=classes, imbalance=imbalance,
                         severity=severity)
        if domain not in generator.DOMAINS:
            raise ConfigError(f"synth: unknown domain {domain!r}.{did_you_mean(domain, generator.DOMAINS)} "
                              f"Domains: {', '.join(generator.DOMAINS)}.")
        if classes not in ("basic", "compound"):
            raise ConfigError(f"synth: `classes` must be 'basic' or 'compound', got {classes!r}.")
        self.n, self.seed, self.domain, self.classes = n, seed, domain, classes
        self.imbalance, self.severity = imbalance, severity

    def load(self, split: str) -> Dataset:
        from facebench.synth import generator

        self.check(split)
        n = self.n or DEFAULT_SIZES[split]
        s = generator.draw_split(split, n, seed=self.seed, domain=self.domain, classes=self.classes,
                                 imbalance=self.imbalance, severity=self.severity)
        class_names = generator.BASIC_EXPRESSIONS if self.classes == "basic" else generator.COMPOUND_EXPRESSIONS
        tag = {"generator": generator.GENERATOR_VERSION, **self.fingerprint_tag()}
        return Dataset(
            name="synth",
            split=split,
            ids=s.ids,
            classes=tuple(class_names),
            labels=np.asarray(s.labels).astype(str),
            images=LazyImages(s.render, len(s), generated=True),
            attributes={"skin_tone": np.asarray(s.skin_tone), "face_shape": np.asarray(s.face_shape),
                        "domain": np.asarray(s.domain)},
            content_tag=tag,
        )
