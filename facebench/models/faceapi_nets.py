"""face-api's expression, age/gender and recognition networks as ``torch.nn.Module``s.

The graphs follow ``@vladmandic/face-api`` 1.7.15 (``src/faceFeatureExtractor``, ``src/xception``,
``src/ageGenderNet``, ``src/faceRecognitionNet``); the weights are the package's TF.js manifests,
read by :mod:`facebench.models.faceapi_weights`. Every module takes face-api's normalised input,
NCHW float32 ``(pixel - [122.782, 117.001, 104.298]) / 255`` in RGB (see :func:`faceapi_input`).

TF.js conventions reproduced:

* 'same' padding puts the odd pixel at the bottom/right (``tf_same_pad``); 'same' max-pooling never
  lets a padded cell win; 'valid' means no padding;
* kernels are HWIO: conv ``(kh, kw, in, out)`` -> ``(out, in, kh, kw)``; a separable conv is a
  depthwise ``(kh, kw, in, 1)`` conv (stride and padding on it) then a 1x1 ``(1, 1, in, out)`` conv,
  then the bias; fully connected weights are ``(in, out)``;
* the input pipeline (``NetInput.toBatchTensor(size, true)``): zero-pad the image to a square with
  ``round(d / 2)`` columns/rows appended after it and the rest before, then
  ``tf.image.resizeBilinear(alignCorners=false, halfPixelCenters=false)`` to the net's size (skipped
  when the square already has it): source coordinate ``dst * in / out``, no antialiasing.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from facebench.errors import ModelError

MEAN_RGB = (122.782, 117.001, 104.298)  # face-api's normalize(); then divided by 255


# -- input pipeline -----------------------------------------------------------------------------------
def pad_to_square(image: torch.Tensor) -> torch.Tensor:
    """(C, H, W) -> (C, S, S), S = max(H, W): zeros, ``round(d/2)`` after the image and the rest before."""
    _, h, w = image.shape
    if h == w:
        return image
    diff = abs(h - w)
    after = math.floor(diff * 0.5 + 0.5)  # JavaScript's Math.round
    before = diff - after
    pad = (before, after, 0, 0) if h > w else (0, 0, before, after)
    return F.pad(image, pad, value=0.0)


def _source_index(out_size: int, in_size: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TF.js legacy bilinear (no align-corners, no half-pixel centres): floor and ceil indices and weights."""
    frac = torch.arange(out_size, dtype=torch.float64, device=device) * (in_size / out_size)
    low = frac.floor().clamp(min=0)
    weight = frac - low
    high = frac.ceil().clamp(max=in_size - 1)
    return low.long(), high.long(), weight


def resize_bilinear_tf(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, size, size) float32 as TF.js's CPU ``resizeBilinear(x, [size, size], false, false)``:
    the interpolation runs in double precision and is rounded once to float32, as JavaScript does."""
    if tuple(x.shape[-2:]) == (size, size):
        return x.float()
    r0, r1, rw = _source_index(size, x.shape[-2], x.device)
    c0, c1, cw = _source_index(size, x.shape[-1], x.device)
    xd = x.double()
    top, bottom = xd[..., r0, :], xd[..., r1, :]
    top = top[..., c0] + (top[..., c1] - top[..., c0]) * cw
    bottom = bottom[..., c0] + (bottom[..., c1] - bottom[..., c0]) * cw
    return (top + (bottom - top) * rw[:, None]).float()


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """(B, 3, S, S) float32 RGB pixel values -> face-api's net input ``(x - MEAN_RGB) / 255`` (float32)."""
    mean = torch.tensor(MEAN_RGB, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    return (pixels.float() - mean) / 255.0


def faceapi_input(images, size: int, device=None) -> torch.Tensor:
    """uint8/float images (H, W, 3) RGB, any sizes -> the (B, 3, size, size) float32 batch face-api's
    nets receive: centred zero-pad to square, TF.js legacy bilinear resize, mean subtraction, /255."""
    out = []
    for image in images:
        array = np.asarray(image)
        t = torch.as_tensor(array if array.flags.writeable else array.copy(), device=device)
        if t.ndim != 3 or t.shape[2] != 3:
            raise ModelError(f"face-api input: expected an (H, W, 3) RGB image, got shape {tuple(t.shape)}.")
        square = pad_to_square(t.permute(2, 0, 1).float())
        out.append(resize_bilinear_tf(square[None], size)[0])
    return normalise(torch.stack(out)) if out else torch.zeros(0, 3, size, size)


# -- layers ----------------------------------------------------------------------------------------
def tf_same_pad(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pad (B, C, H, W) as TF 'same': total ``max((ceil(n/s)-1)*s + k - n, 0)``, the odd pixel after."""
    pads = []
    for n in (x.shape[-1], x.shape[-2]):  # F.pad order: width first
        total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x


class Weights:
    """The manifest's arrays by name, with shape checks; ``used`` records what the graph took."""

    def __init__(self, arrays: dict[str, np.ndarray], what: str):
        self.arrays, self.what, self.used = arrays, what, set()

    def take(self, name: str, ndim: int) -> torch.Tensor:
        if name not in self.arrays:
            raise ModelError(f"{self.what}: the weights manifest has no {name!r}; it is not this network's file "
                             f"(expected face-api's {self.what} weights).")
        array = self.arrays[name]
        if array.ndim != ndim:
            raise ModelError(f"{self.what}: weight {name!r} has shape {array.shape}; expected {ndim} dimensions.")
        self.used.add(name)
        return torch.from_numpy(np.array(array, dtype=np.float32))

    def check_all_used(self) -> None:
        unused = sorted(set(self.arrays) - self.used)
        if unused:
            raise ModelError(f"{self.what}: the weights manifest has entries the network does not use: "
                             f"{', '.join(unused[:8])}{' ...' if len(unused) > 8 else ''}; wrong file?")


def _frozen(t: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(t.contiguous(), requires_grad=False)


class Conv(nn.Module):
    """``tf.conv2d(x, filters, stride, padding) + bias`` (``filters`` HWIO)."""

    def __init__(self, w: Weights, prefix: str, stride: int, padding: str = "same", bias: str = "bias"):
        super().__init__()
        filters = w.take(f"{prefix}/filters", 4)
        self.weight = _frozen(filters.permute(3, 2, 0, 1))
        self.bias = _frozen(w.take(f"{prefix}/{bias}", 1))
        if self.bias.shape[0] != self.weight.shape[0]:
            raise ModelError(f"{w.what}: {prefix} has {self.weight.shape[0]} filters and {self.bias.shape[0]} biases.")
        self.stride, self.same, self.kernel = stride, padding == "same", int(filters.shape[0])

    def forward(self, x):
        if self.same:
            x = tf_same_pad(x, self.kernel, self.stride)
        return F.conv2d(x, self.weight, self.bias, self.stride)


class SeparableConv(nn.Module):
    """``tf.separableConv2d(x, depthwise, pointwise, stride, 'same') + bias``."""

    def __init__(self, w: Weights, prefix: str, stride: int = 1):
        super().__init__()
        depth = w.take(f"{prefix}/depthwise_filter", 4)  # (kh, kw, in, 1)
        kh, kw, cin, mult = depth.shape
        self.depthwise = _frozen(depth.permute(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw))
        point = w.take(f"{prefix}/pointwise_filter", 4)  # (1, 1, in*mult, out)
        if point.shape[2] != cin * mult:
            raise ModelError(f"{w.what}: {prefix} has {cin * mult} depthwise channels but its pointwise filter "
                             f"takes {point.shape[2]}.")
        self.pointwise = _frozen(point.permute(3, 2, 0, 1))
        self.bias = _frozen(w.take(f"{prefix}/bias", 1))
        self.stride, self.kernel, self.groups = stride, int(kh), int(cin)

    def forward(self, x):
        x = F.conv2d(tf_same_pad(x, self.kernel, self.stride), self.depthwise, None, self.stride, groups=self.groups)
        return F.conv2d(x, self.pointwise, self.bias)


class Dense(nn.Module):
    """``tf.matMul(x, weights) + bias`` (``weights`` of shape (in, out); no bias when ``bias`` is None)."""

    def __init__(self, w: Weights, weights: str, bias: str | None):
        super().__init__()
        self.weight = _frozen(w.take(weights, 2).t())
        self.bias = None if bias is None else _frozen(w.take(bias, 1))

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


def _pooled(x: torch.Tensor, what: str) -> torch.Tensor:
    """``tf.avgPool(x, 7, 2, 'valid')`` of the 7x7 bottleneck, flattened to (B, C)."""
    if tuple(x.shape[-2:]) != (7, 7):
        raise ModelError(f"{what}: the bottleneck is {tuple(x.shape[-2:])}, expected 7x7 (a 112x112 input).")
    return F.avg_pool2d(x, 7, 2).flatten(1)


# -- faceExpressionNet ----------------------------------------------------------------------------
class DenseBlock4(nn.Module):
    """face-api's ``denseBlock4``: a stride-2 conv (a regular one in the first block) and 3 separable
    convs, densely summed."""

    def __init__(self, w: Weights, prefix: str, first: bool):
        super().__init__()
        self.conv0 = Conv(w, f"{prefix}/conv0", 2) if first else SeparableConv(w, f"{prefix}/conv0", 2)
        self.conv1 = SeparableConv(w, f"{prefix}/conv1")
        self.conv2 = SeparableConv(w, f"{prefix}/conv2")
        self.conv3 = SeparableConv(w, f"{prefix}/conv3")

    def forward(self, x):
        out1 = F.relu(self.conv0(x))
        out2 = self.conv1(out1)
        out3 = self.conv2(F.relu(out1 + out2))
        out4 = self.conv3(F.relu(out1 + (out2 + out3)))
        return F.relu(out1 + (out2 + (out3 + out4)))


class FaceExpressionNet(nn.Module):
    """FaceFeatureExtractor (4 dense blocks: 32, 64, 128, 256 channels, 112 -> 7) + avgPool + FC 256 -> 7.

    ``forward(x)`` returns ``(logits (B, 7), features (B, 256))``; face-api's probabilities are
    ``softmax(logits)`` in the order neutral, happy, sad, angry, fearful, disgusted, surprised."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        super().__init__()
        w = Weights(arrays, "face_expression_model")
        self.blocks = nn.Sequential(*(DenseBlock4(w, f"dense{i}", i == 0) for i in range(4)))
        self.fc = Dense(w, "fc/weights", "fc/bias")
        w.check_all_used()

    def forward(self, x):
        features = _pooled(self.blocks(x), "face_expression_model")
        return self.fc(features), features


# -- ageGenderNet -----------------------------------------------------------------------------------
class ReductionBlock(nn.Module):
    """TinyXception's reduction block: [relu] sep conv, relu, sep conv, max-pool 3/2 'same', plus a
    1x1/2 conv of the input."""

    def __init__(self, w: Weights, prefix: str, activate_input: bool = True):
        super().__init__()
        self.activate_input = activate_input
        self.separable_conv0 = SeparableConv(w, f"{prefix}/separable_conv0")
        self.separable_conv1 = SeparableConv(w, f"{prefix}/separable_conv1")
        self.expansion_conv = Conv(w, f"{prefix}/expansion_conv", 2)

    def forward(self, x):
        out = F.relu(x) if self.activate_input else x
        out = self.separable_conv1(F.relu(self.separable_conv0(out)))
        out = F.max_pool2d(tf_same_pad(out, 3, 2, float("-inf")), 3, 2)
        return out + self.expansion_conv(x)


class MainBlock(nn.Module):
    """TinyXception's main block: 3 x (relu, separable conv), plus the input."""

    def __init__(self, w: Weights, prefix: str):
        super().__init__()
        self.convs = nn.ModuleList(SeparableConv(w, f"{prefix}/separable_conv{i}") for i in range(3))

    def forward(self, x):
        out = x
        for conv in self.convs:
            out = conv(F.relu(out))
        return out + x


class AgeGenderNet(nn.Module):
    """TinyXception(2 main blocks) to a 7x7x512 map, avgPool, FC 512 -> 1 (age) and FC 512 -> 2 (gender logits).

    ``forward(x)`` returns ``(age (B,), gender_logits (B, 2), features (B, 512))``; gender index 0 is
    male, 1 female (face-api's ``softmax(gender)[0]`` is the probability of male)."""

    def __init__(self, arrays: dict[str, np.ndarray], main_blocks: int = 2):
        super().__init__()
        w = Weights(arrays, "age_gender_model")
        self.conv_in = Conv(w, "entry_flow/conv_in", 2)
        self.entry = nn.Sequential(ReductionBlock(w, "entry_flow/reduction_block_0", activate_input=False),
                                   ReductionBlock(w, "entry_flow/reduction_block_1"))
        self.middle = nn.Sequential(*(MainBlock(w, f"middle_flow/main_block_{i}") for i in range(main_blocks)))
        self.exit_block = ReductionBlock(w, "exit_flow/reduction_block")
        self.exit_conv = SeparableConv(w, "exit_flow/separable_conv")
        self.age = Dense(w, "fc/age/weights", "fc/age/bias")
        self.gender = Dense(w, "fc/gender/weights", "fc/gender/bias")
        w.check_all_used()

    def forward(self, x):
        out = self.middle(self.entry(F.relu(self.conv_in(x))))
        out = F.relu(self.exit_conv(self.exit_block(out)))
        features = _pooled(out, "age_gender_model")
        return self.age(features)[:, 0], self.gender(features), features


# -- faceRecognitionNet ---------------------------------------------------------------------------
class ConvScale(nn.Module):
    """face-api's ``convLayer``: conv + bias, then the 'scale' layer ``x * weights + biases``, optional relu."""

    def __init__(self, w: Weights, prefix: str, stride: int, padding: str, relu: bool):
        super().__init__()
        self.conv = Conv(w, f"{prefix}/conv", stride, padding)
        self.scale = _frozen(w.take(f"{prefix}/scale/weights", 1).view(1, -1, 1, 1))
        self.shift = _frozen(w.take(f"{prefix}/scale/biases", 1).view(1, -1, 1, 1))
        self.relu = relu

    def forward(self, x):
        out = self.conv(x) * self.scale + self.shift
        return F.relu(out) if self.relu else out


class Residual(nn.Module):
    """``residual`` (3x3 'same' convs, identity shortcut) or ``residualDown`` (a 3x3/2 'valid' conv first;
    the shortcut is a 2x2/2 average pool, zero-padded in channels, and the branch is zero-padded by one
    row and column at the bottom/right when the pooled map is larger)."""

    def __init__(self, w: Weights, prefix: str, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = ConvScale(w, f"{prefix}/conv1", 2 if down else 1, "valid" if down else "same", relu=True)
        self.conv2 = ConvScale(w, f"{prefix}/conv2", 1, "same", relu=False)

    def forward(self, x):
        out = self.conv2(self.conv1(x))
        if not self.down:
            return F.relu(out + x)
        pooled = F.avg_pool2d(x, 2, 2)
        if out.shape[-2:] != pooled.shape[-2:]:
            out = F.pad(out, (0, 1, 0, 1))  # face-api concatenates one zero row, then one zero column
        if pooled.shape[1] != out.shape[1]:
            pooled = torch.cat([pooled, torch.zeros_like(pooled)], dim=1)
        return F.relu(pooled + out)


RESIDUAL_LAYERS = (("conv32_1", False), ("conv32_2", False), ("conv32_3", False),
                   ("conv64_down", True), ("conv64_1", False), ("conv64_2", False), ("conv64_3", False),
                   ("conv128_down", True), ("conv128_1", False), ("conv128_2", False),
                   ("conv256_down", True), ("conv256_1", False), ("conv256_2", False), ("conv256_down_out", True))


class FaceRecognitionNet(nn.Module):
    """dlib's ResNet as face-api re-expresses it: 7x7/2 conv, max-pool 3/2, 14 residual layers, spatial
    mean, FC 256 -> 128 without bias. ``forward(x)`` (B, 3, 150, 150) -> (B, 128) descriptors."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        super().__init__()
        w = Weights(arrays, "face_recognition_model")
        self.conv32_down = ConvScale(w, "conv32_down", 2, "valid", relu=True)
        self.layers = nn.Sequential(*(Residual(w, name, down) for name, down in RESIDUAL_LAYERS))
        self.fc = Dense(w, "fc", None)
        w.check_all_used()

    def forward(self, x):
        out = F.max_pool2d(self.conv32_down(x), 3, 2)
        return self.fc(self.layers(out).mean(dim=(2, 3)))
