r"""LPIPS, the learned perceptual distance (Zhang et al. 2018), through the `lpips` package.

VQ-GAN (and so NÜWA §3.1) trains its tokenizer with a perceptual loss and is evaluated with
perceptual metrics. LPIPS compares unit-normalised deep features of two images layer by layer,
weighted by linear layers calibrated on human judgements (shipped inside the `lpips` package: no
download).

The backbone (AlexNet by default) normally holds torchvision's ImageNet weights, which torchvision
would download. nuwa_lab never downloads: when those weights are in the torch hub cache they are
used; otherwise the backbone is randomly initialised (the shipped linear layers are kept) and
`lpips_backbone()` says so. A random backbone still gives a useful distance (0 for identical images,
growing with distortion; random conv features are a known reasonable perceptual baseline), but its
values are not comparable with published LPIPS numbers.

Axes: `b` batch, `t` frames, `h w` pixels; images (b, 3, h, w) or videos (b, t, 3, h, w) in [0, 1].

| symbol | code | meaning |
|---|---|---|
| $\hat y^l_{hw}$ | `lpips.LPIPS` internals | unit-normalised features of layer l |
| $w_l$ | `lin0..lin4` | the shipped linear weights |
| $d(x, x_0)$ | `lpips_distance` | the distance below, per sample |

$d(x, x_0) = \sum_l \frac{1}{H_l W_l} \sum_{h,w}
\lVert w_l \odot (\hat y^l_{hw} - \hat y^l_{0hw})\rVert_2^2$
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

# torchvision's ImageNet checkpoints, named as in the torch hub cache (<hub dir>/checkpoints).
BACKBONE_FILES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}
_MODELS: dict[tuple[str, str, str], nn.Module] = {}


def backbone_weights_path(net: str = "alex") -> Path:
    """Where torchvision keeps the ImageNet weights of `net` (the file may not exist)."""
    if net not in BACKBONE_FILES:
        raise ValueError(f"unknown LPIPS backbone {net!r}; choose one of {sorted(BACKBONE_FILES)}")
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]


def lpips_backbone(net: str = "alex") -> str:
    """A note saying which backbone `lpips_distance` uses, e.g. "alex (ImageNet, cached)"."""
    if backbone_weights_path(net).is_file():
        return f"{net} (ImageNet, cached)"
    return f"{net} (random init: ImageNet weights not in the torch cache)"


def _load_cached_backbone(model: nn.Module, path: Path) -> None:
    """Copy torchvision's cached ImageNet `features.<i>.*` weights into the LPIPS trunk's slices."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    # lpips's trunk keeps torchvision's feature layers under their original index names.
    for slice_module in model.net.children():
        for name, layer in slice_module.named_children():
            for pname, param in layer.named_parameters(recurse=True):
                key = f"features.{name}.{pname}"
                if key not in state:
                    raise KeyError(
                        f"{path} has no {key}: not torchvision's ImageNet checkpoint; "
                        "delete it to use a random backbone"
                    )
                with torch.no_grad():
                    param.copy_(state[key])


def lpips_model(net: str = "alex", device: torch.device | str = "cpu") -> nn.Module:
    """The frozen LPIPS module in eval mode, built once per (net, device, weights file)."""
    path = backbone_weights_path(net)
    cached = path.is_file()
    key = (net, str(device), str(path) if cached else "random")
    if key not in _MODELS:
        import lpips

        with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
            warnings.simplefilter("ignore", UserWarning)  # torchvision's `pretrained=` deprecation
            torch.manual_seed(0)  # the random trunk is the same in every process
            # pnet_rand=True: the trunk is built with pretrained=False, so torchvision never
            # downloads; pretrained=True still loads the package's shipped linear layers.
            model = lpips.LPIPS(pretrained=True, net=net, pnet_rand=True, verbose=False)
        if cached:
            _load_cached_backbone(model, path)
        model.backbone_note = lpips_backbone(net)
        for p in model.parameters():
            p.requires_grad_(False)
        _MODELS[key] = model.eval().to(device)
    return _MODELS[key]


def lpips_distance(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    net: str = "alex",
    min_size: int = 64,
    model: nn.Module | None = None,
) -> torch.Tensor:
    """LPIPS per sample (b,) for images or videos (mean over frames) in [0, 1].

    Images smaller than `min_size` are bilinearly upsampled to it first: AlexNet's stride-4 first
    layer and its max-pools leave no spatial extent at all at 16 x 16 and almost none at 32 x 32.
    Gradients flow to x and y (usable as a perceptual loss); the network itself is frozen.
    """
    if x.shape != y.shape:
        raise ValueError(f"lpips_distance: x has shape {tuple(x.shape)} but y has {tuple(y.shape)}")
    if x.dim() not in (4, 5):
        raise ValueError(f"expected (b, 3, h, w) or (b, t, 3, h, w), got {tuple(x.shape)}")
    video = x.dim() == 5
    b = x.shape[0]
    if video:
        x = rearrange(x, "b t c h w -> (b t) c h w")
        y = rearrange(y, "b t c h w -> (b t) c h w")
    if min(x.shape[-2:]) < min_size:
        scale = min_size / min(x.shape[-2:])
        size = (round(x.shape[-2] * scale), round(x.shape[-1] * scale))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
    model = model or lpips_model(net, x.device)
    d = model(x.float(), y.float(), normalize=True).flatten()  # normalize: [0, 1] -> [-1, 1]
    if video:
        d = rearrange(d, "(b t) -> b t", b=b).mean(dim=1)
    return d
