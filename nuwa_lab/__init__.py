"""nuwa_lab: a notebook-first workbench that rebuilds NÜWA (arXiv 2111.12417) on a laptop CPU.

Import what you need from the submodules (`nuwa_lab.world`, `nuwa_lab.attention`, ...);
importing the package itself does nothing else (no prints, no downloads, no global seeds).
"""

from nuwa_lab.config import PRESETS, Config, make_config

__all__ = ["PRESETS", "Config", "make_config"]
__version__ = "0.1.0"
