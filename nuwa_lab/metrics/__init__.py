"""Evaluation: does a generated sample show what was asked, and how close are two sample sets?

    from nuwa_lab.metrics import psnr, ssim, lpips_distance, lab_fid, attribute_accuracy
    from nuwa_lab.recipes.cache import get_or_train
    probe = get_or_train("probe", cfg)
    attribute_accuracy(probe, generated_pixels, asked_objects)  # {"shape": .., ..., "all": ..}

Modules: image.py (PSNR, SSIM), frechet.py (Fréchet distance, lab-FID / lab-FVD, the Inception FID
path), perceptual.py (LPIPS and which backbone it uses), probe_perceptual.py (the same recipe on
the lab's own trained probe), codebook.py (usage, perplexity), probe.py (ImageProbe, VideoProbe,
Segmenter; their training is `nuwa_lab.recipes.probes`), accuracy.py (attribute and pixel
accuracy), intervals.py (95% intervals of rates, means and differences between arms),
label_probe.py (LabelProbe: a data folder's own classes; `class_accuracy`), ink_motion.py (the
direction a video's ink moves, read from its pixels).
"""

from nuwa_lab.metrics.accuracy import attribute_accuracy, pixel_accuracy, segmentation_accuracy
from nuwa_lab.metrics.codebook import codebook_usage
from nuwa_lab.metrics.frechet import (
    InceptionFeatures,
    extract_features,
    fid,
    fid_if_cached,
    frechet_distance,
    frechet_from_statistics,
    gaussian_statistics,
    inception_backbone,
    lab_fid,
    lab_fvd,
)
from nuwa_lab.metrics.image import psnr, ssim
from nuwa_lab.metrics.ink_motion import ink_centroids, ink_directions, ink_mask
from nuwa_lab.metrics.label_probe import LabelProbe, class_accuracy
from nuwa_lab.metrics.perceptual import lpips_backbone, lpips_distance, lpips_model
from nuwa_lab.metrics.probe import ImageProbe, Segmenter, VideoProbe
from nuwa_lab.metrics.probe_perceptual import ProbePerceptual

__all__ = [
    "ImageProbe",
    "InceptionFeatures",
    "LabelProbe",
    "ProbePerceptual",
    "Segmenter",
    "VideoProbe",
    "attribute_accuracy",
    "class_accuracy",
    "codebook_usage",
    "extract_features",
    "fid",
    "fid_if_cached",
    "frechet_distance",
    "frechet_from_statistics",
    "gaussian_statistics",
    "inception_backbone",
    "ink_centroids",
    "ink_directions",
    "ink_mask",
    "lab_fid",
    "lab_fvd",
    "lpips_backbone",
    "lpips_distance",
    "lpips_model",
    "pixel_accuracy",
    "psnr",
    "segmentation_accuracy",
    "ssim",
]
