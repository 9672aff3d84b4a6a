"""Training formats: how a variant's messages become the rows Axolotl trains on, and the chat template it renders
them with. One module per format, registered by name (`train.format`):

- `chat` (the default): the variant's messages as they are (the instruction in the system turn), rendered with the
  student tokenizer's own chat template.
- `llamafactory_alpaca`: LLaMA-Factory's Alpaca conversion, as the paper trained: the instruction and the input of
  an Alpaca row become one user turn `instruction + "\\n" + input`, the template's default system prompt takes the
  system turn, and the LLaMA-Factory chat template named by `train.chat_template` (qwen, llama3) renders it.
  bench/llamafactory_equivalence.py compares the token ids and label masks with LLaMA-Factory's own code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.registry import Registry

Message = dict[str, Any]


@dataclass(frozen=True)
class Template:
    """A chat template the format renders with: its Jinja text (what Axolotl's `chat_template_jinja` gets), the
    end-of-turn token it trains (the tokenizer's EOS is set to it) and the tokens after it that are trained too."""

    name: str
    jinja: str
    eos_token: str
    trained_after_eos: tuple[str, ...] = ()
    default_system: str = ""
    source: str = ""


@dataclass(frozen=True)
class TrainFormat:
    name: str
    description: str
    render: Callable[[list[Message], Template | None], list[Message]]
    """(the variant's messages with their `training` flags, the chat template or None) -> the exported messages."""
    needs_template: bool = False
    """Whether `train.chat_template` must name a template (the format's system turn comes from it)."""


FORMATS: Registry[TrainFormat] = Registry("training format")
DEFAULT = "chat"


def register_format(spec: TrainFormat) -> TrainFormat:
    FORMATS.add(spec.name, spec)
    return spec


def get_format(name: str) -> TrainFormat:
    return FORMATS.get(name)


def format_names() -> list[str]:
    return FORMATS.names()


TEMPLATES: Registry[Template] = Registry("chat template")


def register_template(template: Template) -> Template:
    TEMPLATES.add(template.name, template)
    return template


def get_template(name: str | None) -> Template | None:
    """A named chat template; None: the student tokenizer's own."""
    return None if name is None else TEMPLATES.get(name)


def template_names() -> list[str]:
    return TEMPLATES.names()


DEFAULTS: dict[str, Any] = {"format": DEFAULT, "chat_template": None, "overlong": "drop"}
"""The train keys of the training format and their defaults: a stage fingerprints them only when set otherwise,
so runs from before they existed stay cached."""


def format_params(train: Any) -> dict[str, Any]:
    """The format keys of a recipe's train block that differ from their defaults."""
    return {key: getattr(train, key) for key, default in DEFAULTS.items() if getattr(train, key) != default}


def render_rows(rows: list[dict[str, Any]], name: str, template: str | None) -> list[dict[str, Any]]:
    """Every row's messages turned into the format's (ids and other keys kept)."""
    spec, chosen = get_format(name), get_template(template)
    return [{**row, "messages": spec.render(row["messages"], chosen)} for row in rows]


from harness.formats import chat, llamafactory_alpaca  # noqa: E402,F401  (registers the built-ins)
