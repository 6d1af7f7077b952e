"""MTCNN (Zhang et al., IEEE SPL 2016) as facebench runs it: the three cascaded networks and the detection
cascade, reading the weights that the PyPI wheel ``facenet-pytorch`` ships (``facenet_pytorch/data/
{pnet,rnet,onet}.pt``, PyTorch state dicts of the original Caffe models).

Written for facebench from the published cascade (the package itself cannot be imported here: it needs
torchvision, whose CPU ops do not load beside this torch build). The conventions reproduce the package's
``detect_face`` so that the points agree with its ``MTCNN.detect(image, landmarks=True)``:

* pixels ``(v - 127.5) / 128`` in float32; pyramid scales ``12 / min_face_size * factor**i`` while the
  shorter side times the scale stays >= 12; each level resized with ``interpolate(mode="area")`` to
  ``(int(h * s + 1), int(w * s + 1))``;
* P-Net cells with face probability >= t1 give boxes ``floor((2 * (x, y) + 1) / s)`` to
  ``floor((2 * (x, y) + 12) / s)``; NMS (IoU > 0.5, areas without +1) per level, then IoU 0.7 over all
  levels; regression by the box's width without +1, then squared (``_square``);
* R-Net and O-Net read the box clipped to the image as ``[y - 1, ey) x [x - 1, ex)`` (1-based corners,
  truncated), area-resized to 24 / 48; they keep scores > t2, t3; regression with the +1 width;
* O-Net's points are ``(w + 1) * p + x1 - 1`` (and the same in y) on the box **before** its regression;
  the final NMS keeps boxes whose intersection over the smaller box (+1 areas) is <= 0.7.

Points and boxes are in the image's pixel coordinates as the package returns them; x is the column.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.functional import interpolate

PIXEL_MEAN, PIXEL_SCALE = 127.5, 0.0078125


class PNet(nn.Module):
    """12x12 proposal network (fully convolutional): (box regression (B, 4, h, w), face prob (B, 2, h, w))."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)


def _caffe_flatten(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, W*H*C) in the Caffe weights' order (width, height, channel)."""
    return x.permute(0, 3, 2, 1).contiguous().view(x.shape[0], -1)


class RNet(nn.Module):
    """24x24 refinement network: (box regression (B, 4), face prob (B, 2))."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu4(self.dense4(_caffe_flatten(self.prelu3(self.conv3(x)))))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    """48x48 output network: (box regression (B, 4), 5 points (B, 10: x0..x4, y0..y4 in the box), prob (B, 2))."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.dense5(_caffe_flatten(self.prelu4(self.conv4(x)))))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)


class MTCNNNets(nn.Module):
    """The three networks, read from a folder holding ``pnet.pt``, ``rnet.pt`` and ``onet.pt``."""

    FILES = ("pnet.pt", "rnet.pt", "onet.pt")

    def __init__(self, folder: Path):
        super().__init__()
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        for net, name in zip((self.pnet, self.rnet, self.onet), self.FILES):
            net.load_state_dict(torch.load(Path(folder) / name, map_location="cpu", weights_only=True))
        self.eval()


# -- the cascade -------------------------------------------------------------------------------------------
def nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy NMS by descending score (stable on ties): indices kept, best first. IoU with areas
    (x2 - x1) * (y2 - y1); a box is dropped when its IoU with a kept one exceeds ``threshold``."""
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes[order]
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    dropped = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):
        if dropped[i]:
            continue
        keep.append(i)
        w = (torch.minimum(b[i, 2], b[i + 1:, 2]) - torch.maximum(b[i, 0], b[i + 1:, 0])).clamp(min=0)
        h = (torch.minimum(b[i, 3], b[i + 1:, 3]) - torch.maximum(b[i, 1], b[i + 1:, 1])).clamp(min=0)
        inter = w * h
        dropped[i + 1:] |= inter / (area[i] + area[i + 1:] - inter) > threshold
    return order[torch.tensor(keep, dtype=torch.long)]


def nms_min(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """The final NMS: intersection over the smaller box, +1 pixel areas, keep overlaps <= ``threshold``;
    candidates taken from the highest score down (``np.argsort`` order)."""
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    rest, keep = np.argsort(scores), []
    while rest.size:
        i, rest = rest[-1], rest[:-1]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        rest = rest[(w * h) / np.minimum(area[i], area[rest]) <= threshold]
    return np.array(keep, dtype=np.int64)


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Boxes grown to squares of side max(w, h) about their centres (w = x2 - x1)."""
    out = boxes.clone()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """Box regression with +1 widths (R-Net and O-Net)."""
    out = boxes.clone()
    w = (boxes[:, 2] - boxes[:, 0] + 1).unsqueeze(1)
    h = (boxes[:, 3] - boxes[:, 1] + 1).unsqueeze(1)
    out[:, :4] = boxes[:, :4] + reg[:, :4] * torch.cat([w, h, w, h], dim=1)
    return out


def _crops(image: torch.Tensor, boxes: torch.Tensor, side: int) -> torch.Tensor:
    """Normalised ``side`` x ``side`` area-resized crops of (1, 3, H, W) ``image`` at ``boxes`` (see module)."""
    h, w = image.shape[2:]
    corners = boxes[:, :4].trunc().int().tolist()
    crops = []
    for x, y, ex, ey in corners:
        x, y, ex, ey = max(x, 1), max(y, 1), min(ex, w), min(ey, h)
        crops.append(interpolate(image[:, :, y - 1:ey, x - 1:ex], size=(side, side), mode="area"))
    return (torch.cat(crops) - PIXEL_MEAN) * PIXEL_SCALE


def _pyramid(h: int, w: int, min_face: float, factor: float) -> list[float]:
    scale, shortest, scales = 12.0 / min_face, min(h, w) * (12.0 / min_face), []
    while shortest >= 12:
        scales.append(scale)
        scale, shortest = scale * factor, shortest * factor
    return scales


def _proposals(nets: MTCNNNets, image: torch.Tensor, scale: float, threshold: float) -> torch.Tensor:
    """P-Net on one pyramid level: (n, 9) = box (4), score, regression (4), after NMS 0.5."""
    h, w = image.shape[2:]
    level = (interpolate(image, size=(int(h * scale + 1), int(w * scale + 1)), mode="area") - PIXEL_MEAN) * PIXEL_SCALE
    reg, prob = nets.pnet(level)
    face = prob[0, 1]
    cells = (face >= threshold).nonzero()  # (row, col), row-major
    xy = cells.flip(1).to(reg.dtype)
    boxes = torch.cat([((2 * xy + 1) / scale).floor(), ((2 * xy + 12) / scale).floor(),
                       face[cells[:, 0], cells[:, 1]].unsqueeze(1), reg[0][:, cells[:, 0], cells[:, 1]].T], dim=1)
    return boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)]


def _stage(net: nn.Module, image: torch.Tensor, boxes: torch.Tensor, side: int, threshold: float):
    """R-Net or O-Net on the boxes: (kept boxes with their new scores, the net's other outputs, kept)."""
    out = net(_crops(image, boxes, side))
    score = out[-1][:, 1]
    keep = score > threshold
    return torch.cat([boxes[keep, :4], score[keep].unsqueeze(1)], dim=1), [o[keep] for o in out[:-1]]


@torch.no_grad()
def detect(nets: MTCNNNets, image: np.ndarray, min_face: float = 20.0, thresholds=(0.6, 0.7, 0.7),
           factor: float = 0.709) -> tuple[np.ndarray, np.ndarray]:
    """uint8 H x W x 3 RGB -> (boxes (n, 5: x1, y1, x2, y2, score), points (n, 5, 2)), float32, in the
    final NMS's order (the package's ``detect_face``; ``MTCNN.detect`` then sorts by box area)."""
    x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).unsqueeze(0).float()
    h, w = x.shape[2:]
    levels = [_proposals(nets, x, s, thresholds[0]) for s in _pyramid(h, w, min_face, factor)]
    boxes = torch.cat(levels) if levels else torch.zeros(0, 9)
    boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)] if len(boxes) else boxes
    if len(boxes):
        bw, bh = (boxes[:, 2] - boxes[:, 0]).unsqueeze(1), (boxes[:, 3] - boxes[:, 1]).unsqueeze(1)
        boxes = _square(torch.cat([boxes[:, :4] + boxes[:, 5:9] * torch.cat([bw, bh, bw, bh], 1), boxes[:, 4:5]], 1))
        boxes, (reg,) = _stage(nets.rnet, x, boxes, 24, thresholds[1])
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7)
        boxes = _square(_regress(boxes[pick], reg[pick]))
    if not len(boxes):
        return np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)
    boxes, (reg, marks) = _stage(nets.onet, x, boxes, 48, thresholds[2])
    points = onet_points(boxes, marks)
    boxes = _regress(boxes, reg)
    pick = nms_min(boxes[:, :4].numpy(), boxes[:, 4].numpy(), 0.7)
    return boxes.numpy()[pick], points.numpy()[pick]


def onet_points(boxes: torch.Tensor, marks: torch.Tensor) -> torch.Tensor:
    """O-Net's 10 outputs on ``boxes`` -> (n, 5, 2) image points: (w + 1) * p + x1 - 1 (and in y)."""
    w = (boxes[:, 2] - boxes[:, 0] + 1).unsqueeze(1)
    h = (boxes[:, 3] - boxes[:, 1] + 1).unsqueeze(1)
    px = w * marks[:, :5] + boxes[:, 0:1] - 1
    py = h * marks[:, 5:] + boxes[:, 1:2] - 1
    return torch.stack([px, py], dim=2)


@torch.no_grad()
def points_in_box(nets: MTCNNNets, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """O-Net's five points on a given box (x1, y1, x2, y2), in the cascade's conventions: (5, 2) float32."""
    x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).unsqueeze(0).float()
    b = torch.tensor([box], dtype=torch.float32)
    _, marks, _ = nets.onet(_crops(x, b, 48))
    return onet_points(b, marks)[0].numpy()
