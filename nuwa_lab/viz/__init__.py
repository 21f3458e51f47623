"""Pictures and widgets of everything below: images, animations, attention footprints and maps.

| module | what |
|---|---|
| `frames` | image grids, frame strips, animations (animated PNG), sketches in colour |
| `attention` | a pattern's footprint on the key grid, frame by frame; the footprint explorer |
| `maps` | a trained model's own attention weights: record, draw, explore |
| `tokenizer` | reconstructions beside the originals, codebook usage |
| `tasks` | a task's mechanism (given / fixed / generated / truth) and comparisons |

Every function returns a matplotlib Figure (or an `Animation`, or an ipywidgets box) and never
calls `plt.show()`, so it works alike under papermill and in JupyterLab. Import the module you need;
importing the package loads nothing.
"""
