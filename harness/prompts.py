"""Prompt styles: one YAML file per style in prompts/, looked up by name.

A style holds the teacher prompts (critique, refine, answer) and the student's training inputs (train.*). Styles
may `extends:` another style; keys missing here come from the parent. Styles are looked up in the working folder's
prompts/ first, then in the shipped prompts/ (harness.paths.prompt_dirs), so a user's style of a shipped name
replaces it and a user's style may extend a shipped one. A stage fingerprints a style's content, never its path.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from harness.dicts import deep_merge
from harness.paths import prompt_dirs
from harness.registry import UnknownName

Message = dict[str, str]


def _folders(folder: Path | tuple[Path, ...] | None) -> tuple[Path, ...]:
    if folder is None:
        return tuple(prompt_dirs())
    return (folder,) if isinstance(folder, Path) else tuple(folder)


def available_styles(folder: Path | tuple[Path, ...] | None = None) -> list[str]:
    """Style names in `folder` (default: the working folder's prompts/ and the shipped ones)."""
    return sorted({p.stem for f in _folders(folder) for p in f.glob("*.yaml")})


def style_path(name: str, folder: Path | tuple[Path, ...] | None = None) -> Path | None:
    """The file of a style: the first folder holding NAME.yaml (working folder first), or None."""
    return next((f / f"{name}.yaml" for f in _folders(folder) if (f / f"{name}.yaml").is_file()), None)


def _read_style(name: str, folders: tuple[Path, ...], seen: tuple[str, ...] = ()) -> dict[str, Any]:
    path = style_path(name, folders)
    if path is None:
        raise UnknownName(f"unknown prompt style '{name}'; available: {', '.join(available_styles(folders))}")
    if name in seen:
        raise ValueError(f"prompt style '{name}' extends itself (via {' -> '.join(seen)})")
    data = YAML(typ="safe").load(path.read_text()) or {}
    parent = data.pop("extends", None)
    return deep_merge(_read_style(parent, folders, (*seen, name)), data) if parent else data


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


def load_style(name: str, folder: Path | tuple[Path, ...] | None = None) -> PromptStyle:
    """The style NAME from `folder` (default: ./prompts, then the shipped prompts/)."""
    return _load_style(name, _folders(folder))


@functools.cache
def _load_style(name: str, folders: tuple[Path, ...]) -> PromptStyle:
    return PromptStyle(name=name, spec=_read_style(name, folders))
