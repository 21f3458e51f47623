"""Recipes: everything that trains a cached thing, and the cache that keeps it.

    from nuwa_lab.recipes import get_or_train, load_kit
    vqgan = get_or_train("vqgan", cfg)   # trained on the first call, loaded on every later one
    kit = load_kit(cfg, "t2i")           # the tokenizers and probes a task needs

| module | artifact kinds | what |
|---|---|---|
| `cache` | | `get_or_train`: the artifact cache, keyed by the config and a hash of the code |
| `tokenizers` | vqgan, vqvae, vqgan_seg | training the tokenizers of `nuwa_lab.tokenizer` |
| `probes` | probe, video_probe, segmenter | training the probes of `nuwa_lab.metrics.probe` |
| `label_probe` | label_probe | a data folder's own classes (`nuwa_lab.metrics.label_probe`) |
| `pretrain` | nuwa | multi-task pretraining (T2I, T2V, V2V) |
| `finetune`, `finetune_data` | task_<name> ... | one task's fine-tuning from the pretrained model |
| `kit` | | `load_kit`: the `TaskKit` (tokenizers, probes) a task runs with |
| `ablation` | | the attention ablation's arms (S2V from scratch, one per pattern) |

Importing this package registers every artifact kind with the cache (each module registers its
own when imported); nothing else happens at import.
"""

from nuwa_lab.recipes import finetune, label_probe, pretrain, probes, tokenizers
from nuwa_lab.recipes.cache import (
    ArtifactError,
    artifact_dir,
    default_root,
    get_or_train,
    is_trained,
    load_meta,
    registered_kinds,
)
from nuwa_lab.recipes.kit import load_kit, tokenizer_kind

__all__ = [
    "ArtifactError",
    "artifact_dir",
    "default_root",
    "finetune",
    "get_or_train",
    "is_trained",
    "label_probe",
    "load_kit",
    "load_meta",
    "pretrain",
    "probes",
    "registered_kinds",
    "tokenizer_kind",
    "tokenizers",
]
