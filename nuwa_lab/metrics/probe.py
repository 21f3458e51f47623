r"""The probes: small CNNs that read the Shapes World's ground truth back from pixels.

NÜWA is judged with CLIPSIM (does the image match its caption?), FID / FVD and, for sketch-to-image,
"Detected PA" (a segmenter run on the output, compared with the input sketch) (§4.2). Those need
networks trained on the web; here the world knows the truth of every sample, so the lab trains its
own:

- `ImageProbe`: an image (b, 3, h, w) -> shape, colour, size, position (one of 9 regions) of each
  object.
- `VideoProbe`: a video (b, t, 3, h, w) -> the same (position at frame 0) plus the initial
  direction. Frames are stacked as channels ("early fusion"): motion is then a first-layer feature.
- `Segmenter`: an image -> the per-pixel class map (0 = background, 1 + shape index), a small U-Net.

Multi-object scenes (max_objects > 1): the probe has one slot per possible object; slot k reads the
k-th object in raster order of their regions (regions are distinct within a scene), and every head
has one extra class "absent" for empty slots. `attribute_accuracy` compares the objects read with
the asked ones as sets, so slot order never matters for evaluation. At smoke / tiny there is one
object.

The penultimate layer (`features`, width 8·channels) gives lab-FID / lab-FVD (`frechet.py`).
Training uses `nuwa_lab.train.loop` (progress, checkpoints, exact resume) on a world with no
held-out
pairs (the probe is the measuring instrument and must read held-out combinations too), with light
noise, blur and colour-offset augmentation so it reads tokenizer reconstructions and generated
samples robustly.

Axes: `b` batch, `t` frames, `h w` pixels, `k` slots, `d` feature width.

| symbol | code | meaning |
|---|---|---|
| $f(x)$ | `probe.features(x)` (b, d) | penultimate features (lab-FID / lab-FVD) |
| $p(a_k \mid x)$ | `probe(x)[a]` (b, k, n_a + 1) | logits of attribute a, slot k (last: absent) |
| $\mathcal{L}$ | `probe.loss(x, y)` | $\sum_a \sum_k \mathrm{CE}(p(a_k \mid x), y_{a,k})$ |
| $\hat s(x)$ | `segmenter(x)` (b, 1 + n_shapes, h, w) | per-pixel class logits |
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from nuwa_lab.config import Config, WorldConfig
from nuwa_lab.world import REGIONS, attribute_classes

IMAGE_ATTRIBUTES = ("shape", "colour", "size", "position")
VIDEO_ATTRIBUTES = (*IMAGE_ATTRIBUTES, "direction")


def _block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1),
        nn.GroupNorm(math.gcd(8, c_out), c_out),
        nn.SiLU(),
    )


def canonical_order(objects: list[Any]) -> list[Any]:
    """Objects sorted by the raster index of their region: the order of the probe's slots."""
    return sorted(objects, key=lambda o: REGIONS.index(o.position))


class AttributeReader(nn.Module):
    r"""A CNN with one classification head per attribute and slot.

    $F = \mathrm{CNN}(x)$ (b, 8c, h/8, w/8), $h = \mathrm{SiLU}(W[\max_{hw} F;
    \mathrm{pool}_{4\times4}(F)])$, $p(a_k \mid x) = W_a h$. The global max is translation
    invariant (what is there: shape, colour, size, learnt once for every place); the pooled map
    keeps where it is. The common body of `ImageProbe` and `VideoProbe`; `in_frames` frames are
    stacked as channels.
    """

    def __init__(
        self, *, world: WorldConfig, channels: int, attributes: tuple[str, ...], in_frames: int
    ):
        super().__init__()
        c = channels
        self.world = world
        self.in_frames = in_frames
        self.slots = world.max_objects
        self.feature_dim = 8 * c
        classes = attribute_classes(world)
        self.classes = {a: classes[a] for a in attributes}
        # Two narrow full-resolution layers see the shapes' outlines (small objects are ~6 px
        # wide); max-pooling keeps the strongest evidence of a shape as the maps shrink.
        self.body = nn.Sequential(
            _block(3 * in_frames, c),
            _block(c, c),
            nn.MaxPool2d(2),  # h/2
            _block(c, 2 * c),
            _block(2 * c, 2 * c),
            nn.MaxPool2d(2),  # h/4
            _block(2 * c, 4 * c),
            _block(4 * c, 4 * c),
            nn.MaxPool2d(2),  # h/8
            _block(4 * c, 8 * c),
        )
        self.where = nn.AdaptiveAvgPool2d(4)  # (b, 8c, 4, 4)
        self.mix = nn.Linear(8 * c * (1 + 16), self.feature_dim)
        self.heads = nn.ModuleDict(
            {
                a: nn.Linear(self.feature_dim, self.slots * (len(v) + 1))
                for a, v in self.classes.items()
            }
        )

    def _stack(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Penultimate features (b, d) of pixels in [0, 1]."""
        f = self.body(2 * self._stack(pixels) - 1)  # (b, 8c, h/8, w/8)
        what = f.amax(dim=(2, 3))  # (b, 8c)
        where = self.where(f).flatten(1)  # (b, 8c * 16)
        return F.silu(self.mix(torch.cat([what, where], dim=1)))

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per attribute, (b, k, n_classes + 1); class n_classes means "no object here"."""
        h = self.features(pixels)
        return {
            a: rearrange(head(h), "b (k n) -> b k n", k=self.slots)
            for a, head in self.heads.items()
        }

    @torch.no_grad()
    def predict(self, pixels: torch.Tensor, *, batch_size: int = 256) -> dict[str, torch.Tensor]:
        """Class indices per attribute (b, k) (n_classes = absent), computed in eval mode."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        chunks = [
            {a: v.argmax(-1).cpu() for a, v in self(pixels[i : i + batch_size].to(device)).items()}
            for i in range(0, len(pixels), batch_size)
        ]
        self.train(was_training)
        return {a: torch.cat([c[a] for c in chunks]) for a in self.classes}

    def read(self, pixels: torch.Tensor, *, batch_size: int = 256) -> list[list[dict[str, str]]]:
        """The objects each sample shows, as attribute-name dicts (absent slots dropped)."""
        pred = self.predict(pixels, batch_size=batch_size)
        out = []
        for i in range(len(pixels)):
            objects = []
            for k in range(self.slots):
                if int(pred["shape"][i, k]) == len(self.classes["shape"]):
                    continue  # the shape head decides whether slot k holds an object
                obj = {}
                for a, names in self.classes.items():
                    j = int(pred[a][i, k])
                    obj[a] = names[j] if j < len(names) else None
                objects.append(obj)
            out.append(objects)
        return out

    def targets(self, objects: list[list[Any]]) -> torch.Tensor:
        """Class-index targets (b, k, n_attributes) of ground-truth objects; absent = n_classes."""
        names = list(self.classes)
        y = torch.tensor([len(self.classes[a]) for a in names]).repeat(len(objects), self.slots, 1)
        for i, objs in enumerate(objects):
            if len(objs) > self.slots:
                raise ValueError(
                    f"sample {i} has {len(objs)} objects but the probe has "
                    f"{self.slots} slots; train it with this world's max_objects"
                )
            for k, o in enumerate(canonical_order(objs)):
                for j, a in enumerate(names):
                    y[i, k, j] = self.classes[a].index(getattr(o, a))
        return y

    def loss(self, pixels: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Summed cross-entropy over attributes and slots, and the per-attribute batch accuracy."""
        logits = self(pixels)
        total, logs = 0.0, {}
        for j, (a, z) in enumerate(logits.items()):
            y = targets[..., j]
            total = total + F.cross_entropy(rearrange(z, "b k n -> (b k) n"), y.flatten())
            logs[f"acc/{a}"] = float((z.argmax(-1) == y).all(dim=1).float().mean())
        return total, logs


class ImageProbe(AttributeReader):
    """Reads shape, colour, size and position of each object of an image (b, 3, h, w)."""

    def __init__(self, *, world: WorldConfig, channels: int = 16):
        super().__init__(world=world, channels=channels, attributes=IMAGE_ATTRIBUTES, in_frames=1)

    def _stack(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.dim() != 4 or pixels.shape[1] != 3:
            raise ValueError(
                f"ImageProbe reads images (b, 3, h, w), got {tuple(pixels.shape)}; "
                "for videos use VideoProbe (or fold frames into the batch)"
            )
        return pixels


class VideoProbe(AttributeReader):
    """Reads shape, colour, size, position (frame 0) and direction from a video (b, t, 3, h, w)."""

    def __init__(self, *, world: WorldConfig, channels: int = 16):
        super().__init__(
            world=world, channels=channels, attributes=VIDEO_ATTRIBUTES, in_frames=world.frames
        )

    def _stack(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.dim() != 5 or pixels.shape[1:3] != (self.in_frames, 3):
            raise ValueError(
                f"VideoProbe reads videos (b, {self.in_frames}, 3, h, w), got "
                f"{tuple(pixels.shape)}; it was trained for world.frames = "
                f"{self.in_frames}"
            )
        return rearrange(pixels, "b t c h w -> b (t c) h w")


class Segmenter(nn.Module):
    r"""A small U-Net: image (b, 3, h, w) -> class logits (b, 1 + n_shapes, h, w).

    $\hat s = \arg\max_c \mathrm{UNet}(x)_c$; pixel accuracy $= \frac{1}{HW}\sum_{hw} [\hat s_{hw} =
    s_{hw}]$ is the lab's "Detected PA". Videos (b, t, 3, h, w) are segmented per frame.
    """

    def __init__(self, *, world: WorldConfig, channels: int = 16):
        super().__init__()
        c = channels
        self.num_classes = 1 + len(world.shapes)
        self.enc1 = _block(3, c)  # h: outlines
        self.enc2 = nn.Sequential(_block(c, 2 * c, 2), _block(2 * c, 2 * c))  # h/2
        self.enc3 = nn.Sequential(_block(2 * c, 4 * c, 2), _block(4 * c, 4 * c))  # h/4
        self.mid = nn.Sequential(_block(4 * c, 4 * c, 2), _block(4 * c, 4 * c))  # h/8: which shape
        self.dec3 = _block(8 * c, 4 * c)
        self.dec2 = _block(6 * c, 2 * c)
        # full resolution: a 1x1 mix of the outline features and the upsampled context (cheap)
        self.dec1 = nn.Sequential(nn.Conv2d(3 * c, 2 * c, 1), nn.SiLU())
        self.out = nn.Conv2d(2 * c, self.num_classes, 1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.dim() == 5:
            b = pixels.shape[0]
            logits = self(rearrange(pixels, "b t c h w -> (b t) c h w"))
            return rearrange(logits, "(b t) n h w -> b t n h w", b=b)
        if pixels.dim() != 4 or pixels.shape[1] != 3 or pixels.shape[-1] % 8:
            raise ValueError(
                f"Segmenter reads (b, 3, h, w) with h, w divisible by 8, got {tuple(pixels.shape)}"
            )
        e1 = self.enc1(2 * pixels - 1)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        m = self.mid(e3)
        d3 = self.dec3(torch.cat([F.interpolate(m, scale_factor=2.0), e3], dim=1))
        d2 = self.dec2(torch.cat([F.interpolate(d3, scale_factor=2.0), e2], dim=1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0, mode="bilinear"), e1], dim=1))
        return self.out(d1)

    @torch.no_grad()
    def predict(self, pixels: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
        """Class maps (b, [t,] h, w), int64, computed in eval mode."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        dim = 2 if pixels.dim() == 5 else 1
        out = torch.cat(
            [
                self(pixels[i : i + batch_size].to(device)).argmax(dim).cpu()
                for i in range(0, len(pixels), batch_size)
            ]
        )
        self.train(was_training)
        return out


def build(kind: str, cfg: Config) -> nn.Module:
    """An untrained probe of `kind` ("probe", "video_probe", "segmenter") for `cfg`."""
    classes = {"probe": ImageProbe, "video_probe": VideoProbe, "segmenter": Segmenter}
    if kind not in classes:
        raise ValueError(f"unknown probe kind {kind!r}; choose one of {sorted(classes)}")
    return classes[kind](world=probe_world(cfg.world), channels=cfg.probe.channels)


def probe_world(world_cfg: WorldConfig) -> WorldConfig:
    """The world the probes train on: the same world with no held-out pairs (all combinations)."""
    return dataclasses.replace(world_cfg, held_out=())
