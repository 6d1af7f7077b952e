"""A run in four steps, each a function of the previous step's output (``facebench.runner`` chains them):

1. **plan** (``plan.py``): suite + settings -> the work. Every task's protocol, loader and the other splits it
   needs are built and checked against each other, every split is loaded and its image files scanned -- all
   before the model loads. Once the model is built, ``resolve_heads`` picks each task's head and
   ``split_work`` lists each dataset split once, with the heads and features that tasks read of it.
2. **execute** (``execute.py``): the engine fills the prediction store, one inference per split (or reuses
   what the store holds). Nothing else runs here.
3. **evaluate** (``evaluate.py``): protocols over the stored predictions, a pure step: one ``TaskOutcome``
   and the metric records per task; a failing protocol fails its task, not the run.
4. **write** (``write.py``): results.json, manifest.json, leaderboard and figures, written whole or not at all.

``facebench run``, ``rescore``, ``facebench.evaluate`` and torchrun ranks all go through these steps.
"""
