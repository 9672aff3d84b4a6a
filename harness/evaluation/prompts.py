"""What a suite's tasks send to the model: lm-eval's own prompt construction rendered with a chat template.

`cgd eval --show-prompt` uses this. The template comes from a model folder (its tokenizer, exactly what the hf
back-end applies), or from the shipped templates of the paper's student families (eval_suites/chat_templates:
qwen2.5-math, llama-3.1), or from a .jinja file. Documents come from the `datasets` cache when the benchmark is
there (the real rows), else from the shipped fixture rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from harness.errors import HarnessError
from harness.paths import EVAL_SUITES_DIR

TEMPLATES_DIR = EVAL_SUITES_DIR / "chat_templates"
_TASK_MANAGERS: dict[str, Any] = {}


@dataclass
class ChatTemplate:
    label: str
    render: Callable[[list[dict[str, str]], bool], str]


def shipped_templates() -> dict[str, dict[str, Any]]:
    return YAML(typ="safe").load((TEMPLATES_DIR / "templates.yaml").read_text())


def load_chat_template(spec: str) -> ChatTemplate:
    """A shipped template name, a model folder (its tokenizer renders), or a .jinja file."""
    from transformers.utils.chat_template_utils import render_jinja_template

    shipped = shipped_templates()
    if spec in shipped:
        meta = shipped[spec]
        text = (TEMPLATES_DIR / meta["file"]).read_text()
        tokens = {k: meta.get(k) for k in ("bos_token", "eos_token") if meta.get(k)}
        label = f"{spec} ({meta['source']})"
    elif Path(spec).is_dir():
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(spec)
        if not tok.chat_template:
            raise HarnessError(f"{spec}: the tokenizer has no chat template")

        def render_tok(messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
            return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                           continue_final_message=not add_generation_prompt)

        return ChatTemplate(f"{spec} (its tokenizer)", render_tok)
    elif Path(spec).is_file():
        text, tokens, label = Path(spec).read_text(), {}, spec
    else:
        raise HarnessError(f"unknown chat template '{spec}'; available: {', '.join(shipped)}, a model folder or a "
                           ".jinja file")

    def render(messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        rendered, _ = render_jinja_template([messages], chat_template=text, add_generation_prompt=add_generation_prompt,
                                            continue_final_message=not add_generation_prompt, **tokens)
        return rendered[0]

    return ChatTemplate(label, render)


def _fixture_rows(path: str, name: str | None) -> dict[str, list[dict[str, Any]]]:
    from harness.datasets_seed import FIXTURES_DIR
    from harness.store import read_jsonl

    folder = FIXTURES_DIR / "hf" / path.replace("/", "__") / (name or "default")
    return {f.stem: read_jsonl(f) for f in sorted(folder.glob("*.jsonl"))}


def _loader(path: str, name: str | None, source: str) -> tuple[Callable[..., Any], str]:
    import datasets

    if source in ("auto", "cache"):
        try:
            ds = datasets.load_dataset(path, name)
            return (lambda **_: ds), "datasets cache"
        except Exception as exc:  # noqa: BLE001 - not cached (offline) or unreachable: fall back to fixtures
            if source == "cache":
                raise HarnessError(f"{path}: not in the datasets cache ({exc}); try --docs fixtures") from exc
    rows = _fixture_rows(path, name)
    if not rows:
        raise HarnessError(f"{path}: not in the datasets cache and no fixture rows in eval_suites/fixtures")
    dd = datasets.DatasetDict({split: datasets.Dataset.from_list(r) for split, r in rows.items()})
    return (lambda **_: dd), "fixture rows"


def _leaf_tasks(task_dict: dict[Any, Any]) -> list[Any]:
    out = []
    for value in task_dict.values():
        out += _leaf_tasks(value) if isinstance(value, dict) else [value]
    return out


def _first_leaf(tm: Any, name: str) -> str:
    """The task itself, or a group's / tag's first task (it shows the prompt's shape)."""
    for _ in range(10):
        if tm._name_is_task(name):
            return name
        subs = tm._get_tasklist(name) if tm._name_is_tag(name) else tm._get_config(name).get("task") or []
        if not subs:
            break
        name = subs[0]["task"] if isinstance(subs[0], dict) else subs[0]
    raise HarnessError(f"cannot find a task to render under '{name}'")


def render_prompts(suite: dict[str, Any], template: ChatTemplate, *, tasks: list[str] | None = None,
                   docs: int = 1, source: str = "auto") -> list[dict[str, Any]]:
    """[{task, doc_id, docs_from, prompt}] for the first `docs` documents of each (leaf) task of the suite."""
    from lm_eval.tasks import TaskManager

    from harness.evaluation.lmeval import DEFAULT_SEEDS, ensure_punkt, task_specs

    lm = suite.get("lm_eval")
    if not lm or not lm.get("tasks"):
        raise HarnessError(f"suite {suite['name']} has no lm-eval tasks (EvalPlus builds its own prompts)")
    ensure_punkt()
    key = lm.get("include_path") or ""
    if key not in _TASK_MANAGERS:  # indexing every lm-eval task takes seconds; reuse it within a process
        _TASK_MANAGERS[key] = TaskManager(include_path=lm.get("include_path"))
    tm = _TASK_MANAGERS[key]
    wanted = set(tasks or [])
    out = []
    for entry, spec in zip(lm["tasks"], task_specs(lm, tm), strict=True):
        if wanted and entry["task"] not in wanted and entry["benchmark"] not in wanted:
            continue
        overrides = {k: v for k, v in spec.items() if k != "task"} if isinstance(spec, dict) else {}
        leaf = _first_leaf(tm, entry["task"])
        base = tm._get_config(leaf)
        loader, docs_from = _loader(base["dataset_path"], base.get("dataset_name"), source)
        task = _leaf_tasks(tm.load_config({"task": leaf, **overrides, "custom_dataset": loader}))[0]
        task.set_fewshot_seed(seed=DEFAULT_SEEDS["fewshot_random_seed"])
        eval_docs = task.test_docs() if task.has_test_docs() else task.validation_docs()
        shots = task.config.num_fewshot or 0
        for i, doc in enumerate(list(eval_docs)[:docs]):
            prompt = task.fewshot_context(doc, shots, system_instruction=lm.get("system_instruction"),
                                          apply_chat_template=bool(lm["apply_chat_template"]),
                                          fewshot_as_multiturn=bool(lm["fewshot_as_multiturn"]),
                                          chat_template=template.render)
            out.append({"task": task.config.task, "benchmark": entry["benchmark"], "doc_id": i,
                        "docs_from": docs_from, "prompt": prompt})
    return out
