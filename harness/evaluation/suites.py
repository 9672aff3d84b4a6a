"""Evaluation suites (eval_suites/<name>.yaml): lm-eval tasks and EvalPlus datasets with the settings they pin.

A suite pins everything that decides its scores: tasks and their shots, chat template use, system instruction,
generation cap, pass@k sampling, EvalPlus versions and limits, the dataset ids and revisions it reads. Its `hash`
covers all of that plus the contents of its custom task files, the grader (harness/grading.py) when a task uses it,
and the installed lm-eval / EvalPlus / math-verify versions. Results carry the hash; the eval cache is keyed by it.

A suite whose tasks grade with harness.grading can be scored by another grader (`lm_eval.grader`, or the recipe's
`eval.grader`; harness.graders): a grader other than the default `math_verify` is recorded in the suite and its code
hashed into the pins, so its scores never share a cache entry with math-verify's. The default adds nothing, so
suites scored by math-verify keep the hash they always had.
"""

from __future__ import annotations

import copy
import hashlib
import os
from importlib import metadata
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from harness.errors import HarnessError
from harness.paths import EVAL_SUITES_DIR
from harness.registry import UnknownName
from harness.store import fingerprint

SUITE_KEYS = {"name", "description", "lm_eval", "evalplus", "datasets"}
LM_KEYS = {"include_path", "apply_chat_template", "fewshot_as_multiturn", "system_instruction", "max_gen_toks",
           "grader", "tasks"}
TASK_KEYS = {"task", "benchmark", "metric", "num_fewshot", "samples", "overrides"}
SAMPLES_KEYS = {"n", "k", "temperature", "top_p"}
EVALPLUS_KEYS = {"greedy", "n_samples", "max_new_tokens", "min_time_limit", "gt_time_limit_factor", "datasets"}
EVALPLUS_DATASET_KEYS = {"dataset", "version", "benchmark", "rows"}
DATASET_KEYS = {"path", "config", "splits", "rows", "revision", "gated"}
GRADER = Path(__file__).resolve().parents[1] / "grading.py"  # the package's own grader (checkout or wheel)


def available_suites(folder: Path = EVAL_SUITES_DIR) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml"))


def _check_keys(where: str, data: Any, allowed: set[str], required: set[str] = frozenset()) -> None:
    if not isinstance(data, dict):
        raise HarnessError(f"{where}: expected a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise HarnessError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    missing = sorted(required - set(data))
    if missing:
        raise HarnessError(f"{where}: missing key(s) {', '.join(missing)}")


def _task_entry(where: str, entry: Any) -> dict[str, Any]:
    if isinstance(entry, str):
        entry = {"task": entry}
    _check_keys(where, entry, TASK_KEYS, {"task"})
    entry = dict(entry)
    entry.setdefault("benchmark", entry["task"])
    entry.setdefault("metric", None)
    samples = entry.get("samples")
    if samples is not None:
        _check_keys(f"{where}.samples", samples, SAMPLES_KEYS, {"n"})
        n = int(samples["n"])
        ks = sorted({int(k) for k in samples.get("k") or [1]})
        if n < 1 or any(k < 1 or k > n for k in ks):
            raise HarnessError(f"{where}.samples: need 1 <= k <= n (n={n}, k={ks})")
        entry["samples"] = {"n": n, "k": ks, "temperature": float(samples.get("temperature", 1.0)),
                            "top_p": float(samples.get("top_p", 1.0))}
    return entry


def _versions() -> dict[str, str | None]:
    out = {}
    for dist in ("lm_eval", "evalplus", "math-verify"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _files_digest(folder: Path) -> tuple[dict[str, str], bool]:
    files, uses_grader = {}, False
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        data = f.read_bytes()
        files[str(f.relative_to(folder))] = hashlib.sha256(data).hexdigest()
        uses_grader = uses_grader or b"harness.grading" in data
    return files, uses_grader


def load_suite(name: str, folder: Path = EVAL_SUITES_DIR, *, max_gen_toks: int | None = None,
               add_tasks: list[str | dict[str, Any]] | None = None, grader: str | None = None) -> dict[str, Any]:
    """The suite's settings (include_path made absolute) with `hash`, a digest of everything that pins its scores.

    `max_gen_toks` replaces the suite's generation cap; `add_tasks` appends lm-eval tasks (names or entries like
    the suite's own). Both change the hash. `grader` (harness.graders) replaces the suite's answer grader when its
    tasks use harness.grading (else it is ignored); a grader other than math_verify changes the hash.
    """
    if grader is not None:
        from harness.graders import get_grader

        get_grader(grader)  # unknown names fail for every suite, not only those that grade answers
    path = folder / f"{name}.yaml"
    if not path.is_file():
        raise UnknownName(f"unknown eval suite '{name}'; available: {', '.join(available_suites(folder))}")
    try:
        suite = YAML(typ="safe").load(path.read_text()) or {}
    except Exception as exc:  # noqa: BLE001 - a YAML syntax error is bad input, not a bug
        raise HarnessError(f"{path}: {exc}") from exc
    where = str(path)
    _check_keys(where, suite, SUITE_KEYS, {"name"})
    if suite["name"] != name:
        raise HarnessError(f"{where}: name '{suite['name']}' does not match the file name '{name}'")
    suite = copy.deepcopy(suite)
    pins: dict[str, Any] = {"versions": _versions()}

    lm = suite.get("lm_eval")
    if lm is not None or add_tasks:
        lm = dict(lm or {})
        _check_keys(f"{where}: lm_eval", lm, LM_KEYS)
        lm["tasks"] = [_task_entry(f"{where}: lm_eval.tasks[{i}]", t) for i, t in enumerate(lm.get("tasks") or [])]
        lm["tasks"] += [_task_entry(f"add_tasks[{i}]", t) for i, t in enumerate(add_tasks or [])]
        names = [t["task"] for t in lm["tasks"]]
        if len(set(names)) != len(names):
            raise HarnessError(f"{where}: a task is listed twice: {', '.join(sorted(names))}")
        lm.setdefault("apply_chat_template", True)
        lm.setdefault("fewshot_as_multiturn", bool(lm["apply_chat_template"]))
        lm.setdefault("system_instruction", None)
        lm.setdefault("max_gen_toks", None)
        if max_gen_toks is not None:
            lm["max_gen_toks"] = int(max_gen_toks)
        if lm.get("include_path"):
            include = (folder / lm["include_path"]).resolve()
            if not include.is_dir():
                raise HarnessError(f"{where}: include_path {include} is not a folder")
            pins["task_files"], uses_grader = _files_digest(include)
            if uses_grader:
                pins["grader"] = hashlib.sha256(GRADER.read_bytes()).hexdigest()
                _choose_grader(lm, pins, grader)
            lm["include_path"] = str(include)
        suite["lm_eval"] = lm
    if suite.get("evalplus") is not None:
        ep = dict(suite["evalplus"])
        _check_keys(f"{where}: evalplus", ep, EVALPLUS_KEYS, {"datasets"})
        ep["datasets"] = [dict(d) for d in ep["datasets"]]
        for i, d in enumerate(ep["datasets"]):
            _check_keys(f"{where}: evalplus.datasets[{i}]", d, EVALPLUS_DATASET_KEYS, {"dataset", "version"})
            if d["dataset"] not in ("humaneval", "mbpp"):
                raise HarnessError(f"{where}: evalplus dataset '{d['dataset']}'; available: humaneval, mbpp")
            d.setdefault("benchmark", d["dataset"])
        ep.setdefault("greedy", True)
        ep.setdefault("n_samples", 1)
        ep.setdefault("max_new_tokens", 768)
        ep.setdefault("min_time_limit", 1.0)
        ep.setdefault("gt_time_limit_factor", 4.0)
        suite["evalplus"] = ep
    for i, d in enumerate(suite.get("datasets") or []):
        _check_keys(f"{where}: datasets[{i}]", d, DATASET_KEYS, {"path", "splits"})
    suite["pins"] = pins
    suite["hash"] = fingerprint(portable_suite(suite, folder))[:16]
    return suite


def _choose_grader(lm: dict[str, Any], pins: dict[str, Any], grader: str | None) -> None:
    """Record a non-default grader in the suite (and hash its code); the default leaves the suite as it was."""
    from harness.graders import DEFAULT, GRADER_FILES, get_grader

    chosen = grader or lm.get("grader") or DEFAULT
    get_grader(chosen)  # an unknown name: "unknown grader 'x'; available: ..."
    if chosen == DEFAULT:
        lm.pop("grader", None)  # never recorded: math-verify's suites keep their hash
        return
    lm["grader"] = chosen
    pins["grader_code"] = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in GRADER_FILES[chosen]}


def portable_suite(suite: dict[str, Any], folder: Path = EVAL_SUITES_DIR) -> dict[str, Any]:
    """The suite without where this checkout lies (include_path relative to the suites folder): what fingerprints
    hash, so a moved checkout keeps its cached evaluations."""
    out = copy.deepcopy(suite)
    if out.get("lm_eval", {}).get("include_path"):
        out["lm_eval"]["include_path"] = os.path.relpath(out["lm_eval"]["include_path"], folder.resolve())
    return out


def suite_datasets(suite: dict[str, Any]) -> list[dict[str, Any]]:
    """The Hugging Face datasets a suite reads (what `cgd data seed/export --suite` works on)."""
    return [dict(d) for d in suite.get("datasets") or []]
