"""Every shipped recipe's stage fingerprints, pinned: a refactor that changes one would re-run (and re-pay) cached
work without anyone deciding it should. When a change is meant (a stage's VERSION bumped, a new fingerprinted
param), regenerate the file and say why in the commit:

    .venv/bin/python -m tests.test_recipe_fingerprints --write
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from harness.paths import RECIPES_DIR
from harness.pipeline import build_graph
from harness.recipe import load_recipes
from harness.store import RunStore

PINNED = Path(__file__).parent / "data" / "recipe_fingerprints.json"


def current(runs: Path) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        for recipe in load_recipes(path):
            graph = build_graph(recipe, RunStore(runs), require_data=False)
            out[recipe.name] = {name: stage.fingerprint[:16] for name, stage in graph.stages.items()}
    return out


def test_shipped_recipes_keep_their_stage_fingerprints(tmp_path):
    pinned = json.loads(PINNED.read_text())
    now = current(tmp_path)
    assert sorted(now) == sorted(pinned), "recipes added or removed: regenerate the pinned fingerprints"
    changed = [f"{recipe} {stage}: {pinned[recipe].get(stage)} -> {fp}" for recipe, stages in now.items()
               for stage, fp in stages.items() if pinned[recipe].get(stage) != fp]
    gone = [f"{recipe} {stage}" for recipe, stages in pinned.items() for stage in stages if stage not in now[recipe]]
    assert not changed and not gone, ("stage fingerprints changed (cached work would run again):\n"
                                      + "\n".join(changed + gone))


if __name__ == "__main__" and "--write" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        PINNED.write_text(json.dumps(current(Path(tmp)), indent=1, sort_keys=True) + "\n")
    print(f"wrote {PINNED}")
