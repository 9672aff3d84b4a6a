"""`train.format: llamafactory_alpaca`: what LLaMA-Factory trains on from the paper's Alpaca rows.

The official pipeline (CapitalOne-Research/Critique-Guided-Distillation, src/cgd_pipeline.py) writes each CGD
example as an Alpaca row `{"instruction": task instruction, "input": question + draft + critique, "output":
refined answer}` and trains it with LLaMA-Factory (README, "Step 3: Fine-Tune with LLaMA-Factory"). LLaMA-Factory's
AlpacaDatasetConverter joins the non-empty instruction and input with "\\n" into ONE user turn, leaves the system
column empty, and its Template._encode then puts the template's default system prompt in the system turn. So the
variant's (system, user) pair becomes (default system, system + "\\n" + user); a row without a system message
(SFT: instruction = the prompt, empty input) keeps its user turn as it is.

The chat templates are LLaMA-Factory's `qwen` and `llama3` (llamafactory 0.9.5, src/llamafactory/data/template.py),
their Jinja text built as Template._get_jinja_template builds it. LLaMA-Factory's supervised processor trains the
assistant slot after the content: `<|im_end|>\\n` for qwen, `<|eot_id|>` for llama3, and (replace_eos) makes the
template's stop word the tokenizer's EOS; the Axolotl config does the same (harness/axolotl/config.py).
bench/llamafactory_equivalence.py checks token ids and label masks against LLaMA-Factory's own code.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.formats import Message, Template, TrainFormat, register_format, register_template


@dataclass(frozen=True)
class Slots:
    """A LLaMA-Factory template's string slots (`{{content}}` marks the content), as registered upstream."""

    system: str
    user: str
    assistant: str
    prefix: str = ""
    default_system: str = ""


QWEN = Slots(
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
)
LLAMA3 = Slots(
    system="<|start_header_id|>system<|end_header_id|>\n\n{{content}}<|eot_id|>",
    user=("<|start_header_id|>user<|end_header_id|>\n\n{{content}}<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    assistant="{{content}}<|eot_id|>",
    prefix="<|begin_of_text|>",  # format_prefix={"bos_token"}: the Llama 3 tokenizer's BOS
)


def _escape(text: str) -> str:
    return text.replace("'", r"\'")


def _slot(slot: str, placeholder: str = "content") -> str:
    pieces = slot.split("{{content}}")
    items = [f"'{_escape(pieces[0])}'"] if pieces[0] else []
    if len(pieces) > 1:
        items.append(placeholder)
        if pieces[1]:
            items.append(f"'{_escape(pieces[1])}'")
    return " + ".join(items)


def jinja(slots: Slots) -> str:
    """The Jinja chat template LLaMA-Factory's Template._get_jinja_template renders for these slots."""
    text = "{{ " + f"'{_escape(slots.prefix)}'" + " }}" if slots.prefix else ""
    if slots.default_system:
        text += "{% set system_message = '" + _escape(slots.default_system) + "' %}"
    text += (
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
        "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% endif %}"
        "{% if system_message is defined %}{{ " + _slot(slots.system, "system_message") + " }}{% endif %}"
        "{% for message in loop_messages %}"
        "{% set content = message['content'] %}"
        "{% if message['role'] == 'user' %}"
        "{{ " + _slot(slots.user) + " }}"
        "{% elif message['role'] == 'assistant' %}"
        "{{ " + _slot(slots.assistant) + " }}"
        "{% endif %}"
        "{% endfor %}"
    )
    return text


def _template(name: str, slots: Slots, eos: str) -> Template:
    after = slots.assistant.split("{{content}}", 1)[1]
    if not after.startswith(eos):
        raise ValueError(f"template {name}: the assistant slot does not end the turn with {eos}")
    rest = after[len(eos):]
    return register_template(Template(name=name, jinja=jinja(slots), eos_token=eos,
                                      trained_after_eos=(rest,) if rest else (),
                                      default_system=slots.default_system, source="llamafactory"))


SLOTS = {"qwen": QWEN, "llama3": LLAMA3}
QWEN_TEMPLATE = _template("qwen", QWEN, "<|im_end|>")
LLAMA3_TEMPLATE = _template("llama3", LLAMA3, "<|eot_id|>")


def to_alpaca(messages: list[Message]) -> dict[str, str]:
    """The Alpaca row the official pipeline would write for a variant's (system?, user, assistant) messages."""
    roles = [m["role"] for m in messages]
    if roles not in (["system", "user", "assistant"], ["user", "assistant"]):
        raise ValueError(f"an Alpaca row holds an optional system, one user and one assistant turn, not {roles}")
    if roles[0] == "system":
        return {"instruction": messages[0]["content"], "input": messages[1]["content"],
                "output": messages[2]["content"]}
    return {"instruction": messages[0]["content"], "input": "", "output": messages[1]["content"]}


def from_alpaca(row: dict[str, str], template: Template) -> list[Message]:
    """LLaMA-Factory's reading of an Alpaca row: "\\n".join of the non-empty instruction and input as the user
    turn, the template's default system prompt (if it has one) as the system turn."""
    user = "\n".join(part for part in (row.get("instruction"), row.get("input")) if part)
    messages: list[Message] = []
    if template.default_system:
        messages.append({"role": "system", "content": template.default_system, "training": False})
    messages.append({"role": "user", "content": user, "training": False})
    messages.append({"role": "assistant", "content": row["output"], "training": True})
    return messages


def render(messages: list[Message], template: Template | None) -> list[Message]:
    if template is None:
        raise ValueError("train.format llamafactory_alpaca needs train.chat_template (qwen or llama3)")
    return from_alpaca(to_alpaca(messages), template)


FORMAT = register_format(TrainFormat(name="llamafactory_alpaca", render=render, needs_template=True,
                                     description="LLaMA-Factory's Alpaca conversion: instruction + \"\\n\" + input "
                                                 "in one user turn, the template's default system prompt"))
