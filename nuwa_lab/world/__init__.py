"""The Shapes World: procedural scenes with ground truth, captions, text tokens and task data sets.

    from nuwa_lab.world import ShapesWorld, TextTokenizer, TaskDataset
    world = ShapesWorld(cfg.world)
    batch = world.images(world.seeds("train")[:64])  # pixels (64, 3, H, W), sketch, ...

Modules: world.py (scenes, splits), sample.py (the types: Sample, Batch, ObjectAttributes),
render.py (the vectorised rasteriser), captions.py
(the grammar), manipulation.py (TI2I / TV2V pairs), text.py (the word tokenizer), datasets.py (the
eight tasks), folders.py (real-data folders), folder_index.py (a folder's captions.jsonl and its
content hash), digits.py (real handwriting exported as such a folder), source.py (`world.source`:
what the recipes train on, the Shapes World or a folder), labels.py (a folder's classes and
directions, from its records).
"""

from nuwa_lab.world.captions import parse_caption, vocabulary
from nuwa_lab.world.datasets import TASKS, TaskDataset, collate
from nuwa_lab.world.folders import FolderDataset
from nuwa_lab.world.manipulation import ManipulationPair
from nuwa_lab.world.text import SPECIALS, TextTokenizer
from nuwa_lab.world.world import (
    REGIONS,
    SPLITS,
    Batch,
    ObjectAttributes,
    Sample,
    ShapesWorld,
    attribute_classes,
    attribute_index,
)

__all__ = [
    "TASKS",
    "FolderDataset",
    "TaskDataset",
    "collate",
    "REGIONS",
    "SPECIALS",
    "SPLITS",
    "Batch",
    "ManipulationPair",
    "ObjectAttributes",
    "Sample",
    "ShapesWorld",
    "TextTokenizer",
    "attribute_classes",
    "attribute_index",
    "parse_caption",
    "vocabulary",
]
