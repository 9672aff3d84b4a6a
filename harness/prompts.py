"""Prompt styles: one YAML file per style in prompts/, looked up by name.

A style holds the teacher prompts (critique, refine, answer) and the student's training inputs (train.*). Styles
may `extends:` another style; keys missing here come from the parent.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from harness.dicts import deep_merge
from harness.paths import PROMPTS_DIR
from harness.registry import UnknownName

Message = dict[str, str]


def available_styles(folder: Path = PROMPTS_DIR) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml"))


def _read_style(name: str, folder: Path, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    path = folder / f"{name}.yaml"
    if not path.is_file():
        raise UnknownName(f"unknown prompt style '{name}'; available: {', '.join(available_styles(folder))}")
    if name in seen:
        raise ValueError(f"prompt style '{name}' extends itself (via {' -> '.join(seen)})")
    data = YAML(typ="safe").load(path.read_text()) or {}
    parent = data.pop("extends", None)
    return deep_merge(_read_style(parent, folder, (*seen, name)), data) if parent else data


def _messages(template: dict[str, Any], fields: dict[str, str]) -> list[Message]:
    msgs = []
    if template.get("system"):
        msgs.append({"role": "system", "content": template["system"].format(**fields)})
    msgs.append({"role": "user", "content": template["user"].format(**fields)})
    return msgs


@dataclass(frozen=True)
class PromptStyle:
    name: str
    spec: dict[str, Any]

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> PromptStyle:
        """The style exactly as fingerprinted into a stage's params (`{"name", "spec"}`)."""
        return cls(name=params["name"], spec=params["spec"])

    @property
    def fixed_critiques(self) -> list[str]:
        """Boilerplate critiques of a style whose critique step calls no teacher (empty if it calls one)."""
        return list(self.spec.get("critique", {}).get("fixed") or [])

    def critique_messages(self, prompt: str, draft: str) -> list[Message]:
        return _messages(self.spec["critique"], {"prompt": prompt, "draft": draft})

    def refine_messages(self, prompt: str, draft: str, critique: str) -> list[Message]:
        return _messages(self.spec["refine"], {"prompt": prompt, "draft": draft, "critique": critique})

    def answer_messages(self, prompt: str) -> list[Message]:
        return _messages(self.spec["answer"], {"prompt": prompt})

    def train_messages(self, kind: str, **fields: str) -> list[Message]:
        """The student's input for a training example: kind is cgd, cgd_no_critique, cft or plain."""
        return _messages(self.spec["train"][kind], fields)

    def corpus(self) -> list[str]:
        """Every fixed text of the style (to train the tiny student's tokenizer on template words)."""
        texts: list[str] = []

        def walk(node: Any) -> None:
            if isinstance(node, str):
                texts.append(node.replace("{", "").replace("}", ""))
            elif isinstance(node, dict):
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk({k: v for k, v in self.spec.items() if k in ("critique", "refine", "answer", "train")})
        return texts


@functools.cache
def load_style(name: str, folder: Path = PROMPTS_DIR) -> PromptStyle:
    return PromptStyle(name=name, spec=_read_style(name, folder))
