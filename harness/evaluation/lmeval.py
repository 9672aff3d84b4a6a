"""A suite's lm-eval tasks on one model, through one of three back-ends, normalized into result rows.

Back-ends (EvalBackend.kind):
- `hf`: lm-eval's transformers model in this process, on CPU or one GPU; every task in one lm-eval call.
- `served`: an OpenAI-compatible server that is already running (`base_url`). Generative tasks go to its chat
  completions endpoint (lm-eval's chat-completions model; the server applies the student's chat template), so
  one server answers every generative task of a model. Log-likelihood tasks (multiple choice) cannot go through
  chat completions: they use the server's completions endpoint with prompt logprobs (`loglikelihood:
  completions`, which vLLM supports), lm-eval's in-process vLLM model (`vllm`) or transformers (`hf`).
- `vllm`: start a server for the model with the generation back-end's launcher (serving.py), then as `served`;
  log-likelihood tasks run before it starts (lm-eval's vLLM model when vLLM is importable here, else
  transformers). The evaluate stage (score_model) starts ONE server per model for all its suites, EvalPlus
  included.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console

from harness.errors import HarnessError

GENERATIVE = "generate_until"
DEFAULT_SEEDS = {"random_seed": 0, "numpy_random_seed": 1234, "torch_random_seed": 1234, "fewshot_random_seed": 1234}


@dataclass
class EvalBackend:
    kind: str = "hf"  # hf | served | vllm
    base_url: str | None = None  # served: the server's root URL (http://127.0.0.1:8000, with or without /v1)
    served_model: str | None = None  # served: the model name the server answers to (default: the model path)
    loglikelihood: str = "auto"  # served/vllm: completions | vllm | hf | auto
    device: str | None = None  # hf: cuda / cpu (default: cuda when available)
    dtype: str | None = None  # hf: default bfloat16 on GPU, float32 on CPU
    num_concurrent: int = 8
    max_retries: int = 3
    timeout_s: int = 1800
    serve: dict[str, Any] = field(default_factory=dict)  # vllm: settings for the launcher (ServeSettings fields)

    def __post_init__(self) -> None:
        if self.kind not in ("hf", "served", "vllm"):
            raise HarnessError(f"unknown eval back-end '{self.kind}'; available: hf, served, vllm")
        if self.kind == "served" and not self.base_url:
            raise HarnessError("eval back-end `served` needs base_url (the running server's root URL)")
        if self.loglikelihood not in ("auto", "completions", "vllm", "hf"):
            raise HarnessError(f"unknown loglikelihood back-end '{self.loglikelihood}'; "
                               "available: auto, completions, vllm, hf")

    def v1(self, base_url: str | None = None) -> str:
        url = (base_url or self.base_url or "").rstrip("/")
        return url if url.endswith("/v1") else f"{url}/v1"


# ----------------------------------------------------------------------------------------------- task specs
def _register_models() -> None:
    """lm-eval models the harness adds: chat completions whose seed differs per repeat of the same request."""
    import lm_eval.models  # noqa: F401 - fill the registry before registering (else 'hf' goes missing)
    from lm_eval.api.registry import MODEL_REGISTRY, register_model
    from lm_eval.models.openai_completions import LocalChatCompletion

    if "cgd-chat-completions" in MODEL_REGISTRY:
        return

    @register_model("cgd-chat-completions")
    class RepeatSeededChatCompletion(LocalChatCompletion):
        """lm-eval sends every request with one fixed seed, so the n repeats a pass@k task asks for would come back
        identical from a server that honours seeds (vLLM). Here the k-th copy of a request gets seed + k."""

        def _create_payload(self, messages, generate=False, gen_kwargs=None, seed=1234, eos=None, **kwargs):
            from harness.store import fingerprint

            seen = self.__dict__.setdefault("_cgd_seen", {})
            key = fingerprint(messages, gen_kwargs)
            offset = seen.get(key, 0)
            seen[key] = offset + 1
            return super()._create_payload(messages, generate=generate, gen_kwargs=gen_kwargs, seed=seed + offset,
                                           eos=eos, **kwargs)


def task_specs(lm: dict[str, Any], tm: Any) -> list[str | dict[str, Any]]:
    """What simple_evaluate gets for each suite entry: the name, or a dict of overrides on the registered task.

    With a grader other than the default (`lm["grader"]`), a task whose process_results grades with harness.grading
    gets it wrapped so that it grades with that grader (harness.graders.graded_results)."""
    from harness.graders import DEFAULT, graded_results

    grader = lm.get("grader") or DEFAULT
    specs: list[str | dict[str, Any]] = []
    for entry in lm["tasks"]:
        override: dict[str, Any] = dict(entry.get("overrides") or {})
        if entry.get("num_fewshot") is not None:
            override["num_fewshot"] = int(entry["num_fewshot"])
        samples = entry.get("samples")
        if samples:
            override.update(_passk_override(entry["task"], samples, tm, override.get("generation_kwargs")))
        if grader != DEFAULT and task_grader(tm, entry["task"], grader):
            process = override.get("process_results") or tm._get_config(entry["task"])["process_results"]
            override["process_results"] = partial(graded_results, base=process, grader=grader)
        specs.append({"task": entry["task"], **override} if override else entry["task"])
    return specs


def uses_grading(process: Any) -> bool:
    """Does this process_results (a function or a partial of one) come from a file that uses harness.grading?"""
    while isinstance(process, partial):
        process = process.func
    code = getattr(process, "__code__", None)
    if code is None:
        return False
    try:
        return b"harness.grading" in Path(code.co_filename).read_bytes()
    except OSError:
        return False


def task_grader(tm: Any, name: str, grader: str) -> str | None:
    """`grader` when `name` is a single task that grades with harness.grading, else None (lm-eval's own scoring)."""
    if not tm._name_is_task(name):
        return None
    return grader if uses_grading(tm._get_config(name).get("process_results")) else None


def _leaf_tasks(tm: Any, name: str, seen: set[str] | None = None) -> list[str]:
    seen = seen if seen is not None else set()
    if name in seen or name not in tm.task_index:
        return []
    seen.add(name)
    if tm._name_is_task(name) or tm._name_is_python_task(name):
        return [name]
    subs = tm._get_tasklist(name) if tm._name_is_tag(name) else (tm._get_config(name).get("task") or [])
    out: list[str] = []
    for sub in subs:
        sub_name = sub["task"] if isinstance(sub, dict) else sub
        if isinstance(sub_name, str):
            out += _leaf_tasks(tm, sub_name, seen)
    return out


def suite_graders(lm: dict[str, Any], tm: Any) -> dict[str, str]:
    """task -> the grader that scores it, for every task (group members included) that grades with harness.grading."""
    from harness.graders import DEFAULT

    grader = lm.get("grader") or DEFAULT
    out: dict[str, str] = {}
    for entry in lm["tasks"]:
        for task in _leaf_tasks(tm, entry["task"]):
            found = task_grader(tm, task, grader)
            if found:
                out[task] = found
    return out


def _passk_override(name: str, samples: dict[str, Any], tm: Any,
                    generation_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """`generation_kwargs`: the entry's own (e.g. an official prompt's stop words), kept under the sampling."""
    from harness.evaluation.passk import passk_results

    if not tm._name_is_task(name):
        raise HarnessError(f"pass@k needs a single task, not the group or tag '{name}'")
    base = tm._get_config(name)
    process = base.get("process_results")
    if not callable(process):
        raise HarnessError(f"pass@k for '{name}': the task has no process_results to score each sample with")
    metric = (base.get("metric_list") or [{"metric": "exact_match"}])[0]["metric"]
    ks = tuple(samples["k"])
    gen = {**(generation_kwargs or base.get("generation_kwargs") or {}), "do_sample": True,
           "temperature": samples["temperature"], "top_p": samples["top_p"]}
    metrics = [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in [metric] +
               [f"pass@{k}" for k in ks]]
    if base.get("filter_list"):
        raise HarnessError(f"pass@k for '{name}': tasks with answer filters are not supported (they keep one "
                           "response per problem)")
    # lm-eval's default filter keeps only the first response; keep all n for process_results
    keep_all = [{"name": "none", "filter": [{"function": "take_first_k", "k": samples["n"]}]}]
    return {"repeats": samples["n"], "generation_kwargs": gen, "metric_list": metrics, "filter_list": keep_all,
            "process_results": partial(passk_results, base=process, metric=metric, ks=ks)}


def _leaf_output_types(tm: Any, name: str, seen: set[str] | None = None) -> set[str]:
    seen = seen if seen is not None else set()
    if name in seen:
        return set()
    seen.add(name)
    if tm._name_is_task(name) or tm._name_is_python_task(name):
        cfg = tm._get_config(name)
        return {cfg.get("output_type", GENERATIVE)}
    if tm._name_is_tag(name):
        subs = tm._get_tasklist(name)
    else:
        cfg = tm._get_config(name)
        subs = cfg.get("task") or []
    types: set[str] = set()
    for sub in subs:
        sub_name = sub["task"] if isinstance(sub, dict) else sub
        if isinstance(sub, dict) and "output_type" in sub:
            types.add(sub["output_type"])
        elif isinstance(sub_name, str) and sub_name in tm.task_index:
            types |= _leaf_output_types(tm, sub_name, seen)
    return types


def split_by_output_type(specs: list[str | dict[str, Any]], tm: Any) -> tuple[list[Any], list[Any]]:
    """(generative specs, log-likelihood specs); a group that mixes both must be listed as its parts."""
    gen, ll = [], []
    for spec in specs:
        name = spec["task"] if isinstance(spec, dict) else spec
        if name not in tm.task_index:
            raise HarnessError(f"unknown lm-eval task '{name}' (not built in, not in the suite's include_path)")
        types = _leaf_output_types(tm, name)
        if isinstance(spec, dict) and "output_type" in spec:
            types = {spec["output_type"]}
        if types == {GENERATIVE}:
            gen.append(spec)
        elif GENERATIVE not in types:
            ll.append(spec)
        else:
            raise HarnessError(f"lm-eval task '{name}' mixes generative and log-likelihood tasks; a served model "
                               "needs them listed separately")
    return gen, ll


# ----------------------------------------------------------------------------------------------- running
def ensure_punkt(console: Console | None = None) -> bool:
    """IFEval needs nltk's punkt_tab and downloads it at import. Offline without it, fall back to the shipped
    approximate copy (abbreviation list only); returns True when the fallback is in use."""
    import os

    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english")
        return False
    except LookupError:
        pass
    from harness.datasets_seed import FIXTURES_DIR

    fallback = str(FIXTURES_DIR / "nltk_data")
    if fallback not in nltk.data.path:
        nltk.data.path.append(fallback)
        os.environ["NLTK_DATA"] = os.pathsep.join(p for p in (os.environ.get("NLTK_DATA"), fallback) if p)
        if console is not None:
            console.print("[yellow]nltk punkt_tab not installed: IFEval counts sentences with the harness's "
                          "approximate fallback (install it with `python -m nltk.downloader punkt_tab`)[/yellow]")
    return True


def _call_lm_eval(*, model: str, model_args: dict[str, Any], specs: list[Any], tm: Any, lm: dict[str, Any],
                  out_dir: Path, limit: int | None, batch_size: int | str, device: str | None) -> tuple[dict, Path]:
    import lm_eval
    from lm_eval.loggers import EvaluationTracker

    out_dir.mkdir(parents=True, exist_ok=True)
    tracker = EvaluationTracker(output_path=str(out_dir))
    gen_kwargs = {"max_gen_toks": int(lm["max_gen_toks"])} if lm.get("max_gen_toks") else None
    res = lm_eval.simple_evaluate(
        model=model, model_args=model_args, device=device, batch_size=batch_size, tasks=copy.deepcopy(specs),
        task_manager=tm, limit=limit, apply_chat_template=bool(lm["apply_chat_template"]),
        system_instruction=lm.get("system_instruction"), fewshot_as_multiturn=bool(lm["fewshot_as_multiturn"]),
        gen_kwargs=gen_kwargs, log_samples=True, evaluation_tracker=tracker, **DEFAULT_SEEDS,
    )
    if res is None:  # non-zero rank of a distributed run
        raise HarnessError("lm-eval returned no results")
    samples = res.pop("samples")
    tracker.save_results_aggregated(results=res, samples=samples)
    folder = out_dir / str(tracker.general_config_tracker.model_name_sanitized)
    for task in res["configs"]:
        tracker.save_results_samples(task_name=task, samples=samples[task])
    return res, folder / f"results_{tracker.date_id}.json"


def _hf_call(model_path: str, backend: EvalBackend, batch_size: int) -> dict[str, Any]:
    import torch

    on_gpu = torch.cuda.is_available() and backend.device != "cpu"
    device = backend.device or ("cuda" if on_gpu else "cpu")
    dtype = backend.dtype or ("bfloat16" if on_gpu else "float32")
    return {"model": "hf", "model_args": {"pretrained": model_path, "dtype": dtype}, "device": device,
            "batch_size": batch_size}


def _vllm_call(model_path: str, backend: EvalBackend, batch_size: int) -> dict[str, Any]:
    args = {"pretrained": model_path, "dtype": backend.dtype or "auto",
            "gpu_memory_utilization": float(backend.serve.get("gpu_memory_utilization", 0.85))}
    return {"model": "vllm", "model_args": args, "device": None, "batch_size": "auto"}


def _chat_call(model_path: str, backend: EvalBackend, base_url: str) -> dict[str, Any]:
    args = {"model": backend.served_model or model_path, "base_url": f"{backend.v1(base_url)}/chat/completions",
            "num_concurrent": backend.num_concurrent, "max_retries": backend.max_retries,
            "timeout": backend.timeout_s}
    return {"model": "cgd-chat-completions", "model_args": args, "device": None, "batch_size": 1}


def _completions_call(model_path: str, backend: EvalBackend, base_url: str, batch_size: int) -> dict[str, Any]:
    args = {"model": backend.served_model or model_path, "base_url": f"{backend.v1(base_url)}/completions",
            "tokenizer_backend": "huggingface", "tokenizer": model_path, "num_concurrent": backend.num_concurrent,
            "max_retries": backend.max_retries, "timeout": backend.timeout_s}
    return {"model": "local-completions", "model_args": args, "device": None, "batch_size": batch_size}


def _vllm_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def loglikelihood_kind(backend: EvalBackend) -> str:
    """Where log-likelihood tasks run: completions (the server), vllm or hf (in-process)."""
    if backend.loglikelihood != "auto":
        return backend.loglikelihood
    if backend.kind == "served":
        return "completions"
    return "vllm" if _vllm_importable() else "hf"


def run_lm_eval(suite: dict[str, Any], *, model_path: str, out_dir: Path, limit: int | None, batch_size: int,
                backend: EvalBackend, console: Console, phase: str = "all",
                launch: Callable[[str, Path], AbstractContextManager[str]] | None = None) -> list[dict[str, Any]]:
    """Score the suite's lm-eval tasks; one row per (benchmark, metric), subtasks of groups included.

    With a server back-end, `phase` splits the work: "loglikelihood" runs only what runs in-process (before a
    server takes the GPU), "generate" only what the server answers; "all" does both.
    """
    from lm_eval.tasks import TaskManager

    lm = suite["lm_eval"]
    _register_models()
    if os.environ.get("LMEVAL_LOG_LEVEL", "").upper() == "ERROR":  # the CLI asked for quiet: datasets too
        import datasets

        datasets.utils.logging.set_verbosity_error()
    names = {t["task"] for t in lm["tasks"]}
    approx_punkt = ensure_punkt(console) if any("ifeval" in n for n in names) else False
    tm = TaskManager(include_path=lm.get("include_path"))
    specs = task_specs(lm, tm)
    graders = suite_graders(lm, tm)

    rows: list[dict[str, Any]] = []

    def run(tag: str, call: dict[str, Any], part: list[Any]) -> None:
        if not part:
            return
        res, results_file = _call_lm_eval(specs=part, tm=tm, lm=lm, out_dir=out_dir / tag, limit=limit, **call)
        rows.extend(normalize_lm_eval(res, suite, results_file, backend=f"{backend.kind}:{call['model']}",
                                      graders=graders))

    if backend.kind == "hf":
        if phase != "generate":
            run("hf", _hf_call(model_path, backend, batch_size), specs)
    else:
        gen, ll = split_by_output_type(specs, tm)
        ll_kind = loglikelihood_kind(backend)
        if phase != "generate":
            if ll and ll_kind == "vllm":
                run("vllm", _vllm_call(model_path, backend, batch_size), ll)
            elif ll and ll_kind == "hf":
                run("hf", _hf_call(model_path, backend, batch_size), ll)
        served_ll = ll if ll_kind == "completions" else []
        if phase != "loglikelihood" and (gen or served_ll):
            with _server(backend, model_path, out_dir, launch, needed=True) as url:
                run("completions", _completions_call(model_path, backend, url, batch_size), served_ll)
                if lm["apply_chat_template"]:
                    run("chat", _chat_call(model_path, backend, url), gen)
                else:
                    # the prompt as text (the server tokenizes it, BOS included): token ids would be cut to
                    # lm-eval's default max_length (2048) minus max_gen_toks
                    gen_call = _completions_call(model_path, backend, url, batch_size)
                    gen_call["model_args"]["tokenized_requests"] = False
                    run("completions-gen", gen_call, gen)
    if approx_punkt:
        for row in rows:
            if "ifeval" in row["task"]:
                row["note"] = "IFEval sentence counts used the approximate punkt_tab fallback"
    return rows


def _server(backend: EvalBackend, model_path: str, out_dir: Path,
            launch: Callable[[str, Path], AbstractContextManager[str]] | None,
            needed: bool) -> AbstractContextManager[str]:
    """The base URL to send requests to: the running server (`served`), or one started for this model."""
    if not needed:
        return contextlib.nullcontext("")
    if backend.kind == "served":
        return contextlib.nullcontext(backend.base_url or "")
    from harness.evaluation.serving import launch_server

    return (launch or partial(launch_server, settings=backend.serve))(model_path, out_dir / "server.log")


# ----------------------------------------------------------------------------------------------- normalizing
def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _leaves(res: dict[str, Any], name: str) -> Iterator[str]:
    subs = (res.get("group_subtasks") or {}).get(name)
    if not subs:
        yield name
        return
    for sub in subs:
        yield from _leaves(res, sub)


def _samples_file(results_file: Path, task: str) -> Path | None:
    stamp = results_file.stem.removeprefix("results_")
    path = results_file.parent / f"samples_{task}_{stamp}.jsonl"
    return path if path.exists() else None


def normalize_lm_eval(res: dict[str, Any], suite: dict[str, Any], results_file: Path,
                      backend: str = "hf", graders: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One row per (benchmark, metric) for every suite task, plus non-primary rows for a group's subtasks.

    lm-eval keys metrics as "<metric>,<filter>" (and "<metric>_stderr,<filter>"); the filter is kept in the
    metric name unless it is "none". `primary` marks the suite's headline metric of each benchmark. `graders`
    (task -> grader name, from suite_graders) adds `grader` to the rows of tasks graded by harness.grading; a
    group's row gets it when all its members share one grader.
    """
    graders = graders or {}
    rows: list[dict[str, Any]] = []
    n_samples = res.get("n-samples") or {}
    results = res.get("results") or {}
    for entry in suite["lm_eval"]["tasks"]:
        name = entry["task"]
        leaves = list(_leaves(res, name))
        is_group = leaves != [name]
        targets = [(name, entry["benchmark"], True)]
        if is_group:
            targets += [(leaf, f"{entry['benchmark']}/{leaf}", False) for leaf in leaves]
        for task, benchmark, headline in targets:
            metrics = results.get(task)
            if not metrics:
                continue
            leaf_list = leaves if task == name else [task]
            n = sum(int((n_samples.get(t) or {}).get("effective") or 0) for t in leaf_list) or None
            if task == name and is_group:
                pattern = re.sub(r"results_(.*)\.json$", r"samples_*_\1.jsonl", results_file.name)
                samples: str | None = str(results_file.parent / pattern)
            else:
                found = _samples_file(results_file, task)
                samples = str(found) if found else None
            used = {graders.get(t) for t in leaf_list}
            grader = used.pop() if len(used) == 1 else None
            metric_rows = []
            for key, value in metrics.items():
                if "," not in key or "_stderr," in key:
                    continue
                metric, filt = key.split(",", 1)
                number = _finite(value)
                if number is None:
                    continue
                label = metric if filt == "none" else f"{metric},{filt}"
                metric_rows.append({
                    "benchmark": benchmark, "task": task, "metric": label, "value": number,
                    "stderr": _finite(metrics.get(f"{metric}_stderr,{filt}")), "n": n, "suite": suite["name"],
                    "suite_hash": suite["hash"], "samples": samples, "results_file": str(results_file),
                    "backend": backend, "primary": False})
                if grader:
                    metric_rows[-1]["grader"] = grader
            if headline and metric_rows:
                wanted = entry.get("metric")
                chosen = [r for r in metric_rows if r["metric"] == wanted] if wanted else metric_rows[:1]
                if wanted and not chosen:
                    raise HarnessError(f"suite {suite['name']}: task {name} reported no metric '{wanted}' "
                                       f"(it has: {', '.join(r['metric'] for r in metric_rows)})")
                chosen[0]["primary"] = True
            rows += metric_rows
    return rows
