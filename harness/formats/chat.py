"""`train.format: chat` (the default): the variant's messages exactly as built (harness/variants/rows.py), the
instruction in the system turn; rendered by the student tokenizer's own chat template unless
`train.chat_template` names one."""

from __future__ import annotations

from harness.formats import Message, Template, TrainFormat, register_format


def render(messages: list[Message], template: Template | None) -> list[Message]:
    return messages


FORMAT = register_format(TrainFormat(name="chat", description=__doc__.split("\n\n")[0], render=render))
