"""The lab: what runs the notebooks and measures the library, on top of every other layer.

| module | what |
|---|---|
| `job` | the main job, `python -m nuwa_lab lab` (`make lab`): every notebook, then the report |
| `progress` | what a running notebook is doing, forwarded from its kernel to the terminal |
| `schedule` | what `make lab` will run, the artifacts each notebook needs, how long it takes |
| `experiment/` | the papermill runner, sweeps over parameter grids, collection and the report |
| `bench/` | speed benchmarks, `python -m nuwa_lab bench TARGET`, as ratios in one process |
| `world_cli` | `python -m nuwa_lab world`: preview the Shapes World |
| `probe_cli` | `python -m nuwa_lab probe`: train / load the probes and print their accuracies |

Importing the package loads nothing; each command imports what it drives.
"""
