"""Dataset and model cards, and the named, stable places a run's artifacts are found in.

RUNS_DIR/<recipe>/datasets/<variant>/   README.md (dataset card) + data/train.jsonl (`datasets.load_dataset(folder)`)
RUNS_DIR/<recipe>/models/<name>/        README.md (model card) + the trained model's files as relative symlinks
RUNS_DIR/<recipe>/artifacts.json        what is where, and the facts the cards were rendered from (`cgd publish`)

`<name>` is the variant, or `<variant>@seed<N>` when the recipe trains several seeds. The stage folders stay the
single source of truth: nothing is written into them (a trained model's content hash decides whether evaluations
rerun), the named places only link to them.
"""

from __future__ import annotations

from typing import Any

import yaml

TAGS = ["cgd-harness", "critique-guided-distillation"]


def front_matter(meta: dict[str, Any]) -> str:
    """A Hub card's YAML header (`---` ... `---`)."""
    body = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return f"---\n{body}---\n"


def md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
