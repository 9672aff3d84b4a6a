"""Axolotl glue: render a training config from a recipe, prove the loss masking with Axolotl's own
preprocessing, and launch `axolotl train` as a subprocess.

Submodules import Axolotl lazily (it takes seconds), so importing this package is cheap.
"""

from __future__ import annotations

__all__ = ["config", "launch", "masking"]
