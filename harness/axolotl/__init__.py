"""Axolotl glue: render a training config from a recipe (config), check it with Axolotl's own validation and
locate problems at recipe lines (check), prove the loss masking with Axolotl's own preprocessing (masking), launch
`axolotl train` as a subprocess on one or several machines (launch), write Slurm scripts (slurm) and the
`cgd train` command (cli). DeepSpeed presets ship as JSON in deepspeed/.

Submodules import Axolotl lazily (it takes seconds), so importing this package is cheap.
"""

from __future__ import annotations

__all__ = ["check", "cli", "config", "launch", "masking", "slurm"]
