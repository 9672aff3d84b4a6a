"""What a suite's tasks send to the model: lm-eval's own prompt construction rendered with a chat template.

`cgd eval --show-prompt` uses this. The template comes from a model folder (its tokenizer, exactly what the hf
back-end applies), or from the shipped templates of the paper's student families (eval_suites/chat_templates:
qwen2.5-math, llama-3.1), or from a .jinja file, or is one of the official hand-written prompts of the paper's
maths evaluation (chat_templates/official_prompts.yaml: llama3-math-cot, qwen25-math-cot), which a recipe selects
with `eval.template` (apply_prompt_template). Documents come from the `datasets` cache when the benchmark is there
(the real rows), else from the shipped fixture rows.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from harness.errors import HarnessError
from harness.paths import EVAL_SUITES_DIR

TEMPLATES_DIR = EVAL_SUITES_DIR / "chat_templates"
OFFICIAL_PROMPTS_FILE = TEMPLATES_DIR / "official_prompts.yaml"
_TASK_MANAGERS: dict[str, Any] = {}


@dataclass
class ChatTemplate:
    label: str
    render: Callable[[list[dict[str, str]], bool], str]
    prompt_template: str | None = None  # an official prompt's name: render_prompts applies it to the suite first


def shipped_templates() -> dict[str, dict[str, Any]]:
    return YAML(typ="safe").load((TEMPLATES_DIR / "templates.yaml").read_text())


# ----------------------------------------------------------------------------------------------- official prompts
def official_prompts() -> dict[str, dict[str, Any]]:
    """The paper's hand-written maths prompts and their stop words (chat_templates/official_prompts.yaml)."""
    return YAML(typ="safe").load(OFFICIAL_PROMPTS_FILE.read_text())


def _official(name: str) -> dict[str, Any]:
    prompts = official_prompts()
    if name not in prompts:
        raise HarnessError(f"unknown official prompt '{name}'; available: {', '.join(prompts)}")
    return prompts[name]


def render_official(name: str, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """Messages in an official prompt's turn format (the official text when they are its system turn and one
    question)."""
    meta = _official(name)
    text = "".join(meta["turn"].format(role=m["role"], content=m["content"]) for m in messages)
    return text + (meta["generation"] if add_generation_prompt else "")


def official_prompt(name: str, question: str) -> str:
    """The official prompt around one question, e.g. utils.py PROMPT_TEMPLATES["llama3-math-cot"][0] formatted."""
    return render_official(name, [{"role": "system", "content": _official(name)["system"]},
                                  {"role": "user", "content": question}])


def official_stop_words(name: str) -> list[str]:
    return list(_official(name)["stop"])


def _task_configs(include_path: str) -> dict[str, dict[str, Any]]:
    """The suite's own task YAMLs (includes resolved, !function left unresolved), by task name."""
    from lm_eval.utils import load_yaml_config

    out = {}
    for path in sorted(Path(include_path).glob("*.yaml")):
        cfg = load_yaml_config(str(path), mode="simple")
        if isinstance(cfg, dict) and isinstance(cfg.get("task"), str):
            out[cfg["task"]] = cfg
    return out


def _trimmed(doc_to_text: str) -> str:
    """'{{problem}}' -> '{{ problem | trim }}': the official loader strips the question (parse_question)."""
    match = re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", doc_to_text)
    return f"{{{{ {match.group(1)} | trim }}}}" if match else doc_to_text


def apply_prompt_template(suite: dict[str, Any], name: str) -> dict[str, Any]:
    """The suite with an official prompt instead of the student's chat template (a recipe's `eval.template`).

    Only the suites the prompt names (its `suites`) change; any other comes back as it is. Each task's question
    (its doc_to_text) is written into the official prompt, the task stops at the official stop words, and lm-eval
    sends the text as it is (no chat template, no system instruction: the prompt holds its own system turn). The
    prompt's name, text and stop words become part of the suite's settings, and so of its hash.
    """
    from harness.evaluation.suites import portable_suite
    from harness.store import fingerprint

    meta = _official(name)
    lm = suite.get("lm_eval")
    if suite["name"] not in meta["suites"] or not lm:
        return suite
    configs = _task_configs(lm["include_path"]) if lm.get("include_path") else {}
    out = copy.deepcopy(suite)
    for entry in out["lm_eval"]["tasks"]:
        cfg = configs.get(entry["task"])
        if cfg is None or not isinstance(cfg.get("doc_to_text"), str):
            raise HarnessError(f"eval.template {name}: suite {suite['name']} task {entry['task']} is not one of its "
                               "own tasks with a template-string doc_to_text; the prompt cannot be applied to it")
        overrides = dict(entry.get("overrides") or {})
        overrides["doc_to_text"] = official_prompt(name, _trimmed(cfg["doc_to_text"]))
        overrides["generation_kwargs"] = {**(cfg.get("generation_kwargs") or {}),
                                          **(overrides.get("generation_kwargs") or {}),
                                          "until": official_stop_words(name)}
        entry["overrides"] = overrides
    out["lm_eval"].update(apply_chat_template=False, fewshot_as_multiturn=False, system_instruction=None,
                          prompt_template=name)
    body = {k: v for k, v in out.items() if k != "hash"}
    out["hash"] = fingerprint(portable_suite(body))[:16]
    return out


def load_chat_template(spec: str) -> ChatTemplate:
    """A shipped template name, an official prompt's name, a model folder (its tokenizer renders), or a .jinja
    file."""
    from transformers.utils.chat_template_utils import render_jinja_template

    shipped = shipped_templates()
    official = official_prompts()
    if spec in official:
        def render_official_prompt(messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
            return render_official(spec, messages, add_generation_prompt)

        return ChatTemplate(f"{spec} (official prompt, {official[spec]['source']})", render_official_prompt, spec)
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
        raise HarnessError(f"unknown chat template '{spec}'; available: {', '.join([*shipped, *official])}, a model "
                           "folder or a .jinja file")

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
    """[{task, doc_id, docs_from, prompt}] for the first `docs` documents of each (leaf) task of the suite.

    An official prompt (template.prompt_template) is applied to the suite first, as `eval.template` does."""
    from lm_eval.tasks import TaskManager

    from harness.evaluation.lmeval import DEFAULT_SEEDS, ensure_punkt, task_specs

    if template.prompt_template and suite.get("lm_eval"):
        suite = apply_prompt_template(suite, template.prompt_template)
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
