"""Decontamination: are training prompts benchmark problems? Normalized n-gram overlap and exact match.

Normalization: lowercase, LaTeX spacing commands (`\\,`, `\\quad`, `\\left`, ...) dropped, every run of
punctuation and whitespace one space; the words are what is compared. A prompt is a hit for a benchmark when it
equals one of its problems after normalization (`exact`), contains a whole problem shorter than n words
(`contained`), or shares an n-gram (13 words by default, as in the literature) with one (`ngram`). Benchmark
n-grams are indexed in a dict, so a prompt costs one hash per word window: 100K prompts take seconds.

Benchmark problems are read from what each of the recipe's suites names: the lm-eval task files in its
include_path (dataset_path / dataset_name / test_split / doc_to_text, or a custom_dataset function), the datasets
it lists, and its EvalPlus datasets, from the local `datasets` cache (prepared Arrow files, as `cgd data seed` or a
download leaves them) and EvalPlus's cache. A benchmark without a local copy is reported as not checked, never a
failure.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NOT_CHECKED = "not checked (no local copy)"
TEXT_FIELDS = ("problem", "Problem", "question", "Question", "prompt", "input", "instruction", "query", "text")
EXAMPLES = 3  # example hits kept per benchmark in the stage's info
_LATEX_SPACING = re.compile(r"\\(?:[,;:! ]|quad|qquad|left|right|displaystyle|textstyle)(?![A-Za-z])")
_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """The lowercase words of `text`: punctuation, LaTeX spacing and whitespace runs are only separators."""
    text = text.lower()
    if "\\" in text:
        text = _LATEX_SPACING.sub(" ", text)
    return _WORD.findall(text)


def normalize(text: str) -> str:
    """Lowercase words separated by single spaces (what exact matches and duplicates compare)."""
    return " ".join(words(text))


@dataclass
class Benchmark:
    name: str
    source: str  # where its problems came from (a dataset id and split, a file)
    texts: list[str] | None  # None: no local copy
    identity: str | None = None  # what changes when the local copy changes (a prepared-cache folder, a file digest)

    @property
    def status(self) -> str:
        return NOT_CHECKED if self.texts is None else f"{len(self.texts)} problems"


@dataclass
class Hit:
    index: int  # the prompt's position in the checked list
    benchmark: str
    match: str  # exact | contained | ngram
    item: int  # the benchmark problem's position
    shared: int  # shared n-grams with that problem (1 for exact / contained)


@dataclass
class Index:
    """Benchmark problems indexed by normalized text, whole short problems and n-grams."""

    n: int = 13
    exact: dict[str, tuple[str, int]] = field(default_factory=dict)
    grams: dict[tuple[str, ...], tuple[str, int]] = field(default_factory=dict)
    short: dict[int, dict[tuple[str, ...], tuple[str, int]]] = field(default_factory=dict)
    texts: dict[str, list[str]] = field(default_factory=dict)

    def add(self, benchmark: str, texts: Iterable[str]) -> None:
        kept = self.texts.setdefault(benchmark, [])
        for text in texts:
            item = len(kept)
            kept.append(text)
            w = tuple(words(text))
            if not w:
                continue
            self.exact.setdefault(" ".join(w), (benchmark, item))
            if len(w) < self.n:
                self.short.setdefault(len(w), {}).setdefault(w, (benchmark, item))
                continue
            for i in range(len(w) - self.n + 1):
                self.grams.setdefault(w[i:i + self.n], (benchmark, item))

    def check(self, index: int, words: tuple[str, ...], norm: str) -> list[Hit]:
        """The hits of one prompt (its words and their normalized text), one per benchmark it overlaps: the first
        problem it matches, with the count of shared n-grams."""
        if norm in self.exact:
            bench, item = self.exact[norm]
            return [Hit(index, bench, "exact", item, 1)]
        found: dict[str, Hit] = {}
        for length, table in self.short.items():
            for i in range(len(words) - length + 1):
                owner = table.get(words[i:i + length])
                if owner is not None and owner[0] not in found:
                    found[owner[0]] = Hit(index, owner[0], "contained", owner[1], 1)
        n, grams = self.n, self.grams
        if grams:
            for i in range(len(words) - n + 1):
                owner = grams.get(words[i:i + n])
                if owner is None:
                    continue
                hit = found.get(owner[0])
                if hit is None:
                    found[owner[0]] = Hit(index, owner[0], "ngram", owner[1], 1)
                elif hit.match == "ngram":
                    hit.shared += 1
        return list(found.values())


def scan(prompts: list[str], benchmarks: list[Benchmark], n: int = 13) -> dict[str, Any]:
    """Check `prompts` against the benchmarks: the hits, the contaminated and duplicate prompt positions, and a
    summary (counts per benchmark, a few examples each) fit for a manifest."""
    index = Index(n)
    for b in benchmarks:
        if b.texts is not None:
            index.add(b.name, b.texts)
    hits: list[Hit] = []
    seen: set[str] = set()
    duplicates: list[int] = []
    for i, prompt in enumerate(prompts):
        w = tuple(words(prompt))
        key = " ".join(w)
        if key in seen:
            duplicates.append(i)
        seen.add(key)
        hits += index.check(i, w, key)
    contaminated = sorted({h.index for h in hits})
    per: dict[str, dict[str, Any]] = {}
    for b in benchmarks:
        per[b.name] = {"source": b.source, "status": b.status, "hits": 0, "exact": 0, "examples": []}
    for h in hits:
        entry = per[h.benchmark]
        entry["hits"] += 1
        entry["exact"] += h.match == "exact"
        if len(entry["examples"]) < EXAMPLES:
            entry["examples"].append({"prompt": _clip(prompts[h.index]), "match": h.match, "shared_ngrams": h.shared,
                                      "problem": _clip(index.texts[h.benchmark][h.item])})
    summary = {"prompts": len(prompts), "ngram": n, "contaminated": len(contaminated),
               "duplicates": len(duplicates), "benchmarks": per}
    return {"hits": hits, "contaminated": contaminated, "duplicates": duplicates, "summary": summary}


def _clip(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def summary_line(summary: dict[str, Any]) -> str:
    """`3 of 500 prompts contaminated (math500 2, gsm8k 1; aime24 not checked (no local copy)), 4 duplicates`."""
    parts = []
    for name, b in summary["benchmarks"].items():
        parts.append(f"{name} {b['status']}" if b["status"] == NOT_CHECKED else f"{name} {b['hits']}")
    return (f"{summary['contaminated']} of {summary['prompts']} prompts match a benchmark ({summary['ngram']}-grams; "
            + ", ".join(parts) + f"), {summary['duplicates']} duplicates after normalization")


# --- where the benchmarks' problems are --------------------------------------------------------------------------

def _yaml_load(path: Path) -> dict[str, Any]:
    """A task YAML with lm-eval's `!function` tags read as the strings they name."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe")
    yaml.constructor.add_constructor("!function", lambda loader, node: {"function": loader.construct_scalar(node)})
    data = yaml.load(path.read_text()) or {}
    if isinstance(data, dict) and isinstance(data.get("include"), str):
        base = _yaml_load(path.parent / data["include"])
        data = {**base, **{k: v for k, v in data.items() if k != "include"}}
    return data if isinstance(data, dict) else {}


def _task_files(include: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    found = {}
    for path in sorted(include.glob("*.yaml")):
        try:
            spec = _yaml_load(path)
        except Exception:  # noqa: BLE001 - a file this reader cannot parse is not a task it can check
            continue
        if isinstance(spec.get("task"), str):
            found[spec["task"]] = (path, spec)
    return found


def _snake(name: str) -> str:  # datasets.naming.camelcase_to_snakecase, without importing datasets
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z\d])([A-Z])", r"\1_\2", name).lower()


def _arrow_files(repo_id: str, config: str | None, split: str, cache: Path | None = None) -> list[Path]:
    """The newest prepared Arrow files of (repo_id, config, split) in the local `datasets` cache, or []."""
    from harness.datasets_seed import hf_datasets_cache

    org_name = repo_id.split("/")
    snake = _snake(org_name[-1])
    root = (cache or hf_datasets_cache()) / "___".join([*org_name[:-1], snake]) / (config or "default")
    best: list[Path] = []
    best_time = -1.0
    for folder in root.glob("*/*"):
        files = sorted([*folder.glob(f"{snake}-{split}.arrow"), *folder.glob(f"{snake}-{split}-*-of-*.arrow")])
        if files and folder.stat().st_mtime > best_time:
            best, best_time = files, folder.stat().st_mtime
    return best


def _read_arrow(files: list[Path]) -> list[dict[str, Any]]:
    import pyarrow as pa

    rows: list[dict[str, Any]] = []
    for f in files:
        with pa.memory_map(str(f)) as source:
            try:
                table = pa.ipc.open_stream(source).read_all()
            except pa.ArrowInvalid:
                table = pa.ipc.open_file(source).read_all()
        rows += table.to_pylist()
    return rows


def _text_of(row: dict[str, Any], field_name: str | None) -> str | None:
    names = (field_name,) if field_name else TEXT_FIELDS
    for name in names:
        value = row.get(name)
        if isinstance(value, str) and value.strip():
            return value
    return None


def _field_of(doc_to_text: Any) -> str | None:
    m = re.fullmatch(r"\s*\{\{\s*(\w+)\s*\}\}\s*", doc_to_text) if isinstance(doc_to_text, str) else None
    return m.group(1) if m else None


def _hf_benchmark(name: str, repo_id: str, config: str | None, splits: list[str], text_field: str | None
                  ) -> Benchmark:
    source = f"{repo_id}" + (f" ({config})" if config not in (None, "default") else "") + f" {'/'.join(splits)}"
    configs = [config]
    if config == "*":
        from harness.datasets_seed import hf_datasets_cache

        root = hf_datasets_cache() / "___".join([*repo_id.split("/")[:-1], _snake(repo_id.split("/")[-1])])
        configs = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    texts: list[str] = []
    folders: list[str] = []
    for cfg in configs:
        for split in splits:
            files = _arrow_files(repo_id, cfg, split)
            if not files:
                return Benchmark(name, source, None)
            folders.append(f"{cfg or 'default'}/{files[0].parent.name}/{split}")
            texts += [t for row in _read_arrow(files) if (t := _text_of(row, text_field)) is not None]
    if not configs:
        return Benchmark(name, source, None)
    return Benchmark(name, source, texts, identity=hashlib.sha256(",".join(folders).encode()).hexdigest()[:16])


def _custom_benchmark(name: str, include: Path, spec: dict[str, Any]) -> Benchmark:
    """A task whose rows come from a function in its folder (`custom_dataset: !function utils.load`)."""
    fn = spec["custom_dataset"]["function"]
    module_name, _, attr = fn.rpartition(".")
    split = spec.get("test_split") or "test"
    source = f"{include.name}/{fn}() {split}"
    try:
        mod_spec = importlib.util.spec_from_file_location(f"_cgd_decontam_{include.name}_{module_name}",
                                                          include / f"{module_name}.py")
        module = importlib.util.module_from_spec(mod_spec)  # type: ignore[arg-type]
        sys.modules[mod_spec.name] = module  # type: ignore[union-attr]
        mod_spec.loader.exec_module(module)  # type: ignore[union-attr]
        rows = list(getattr(module, attr)(**(spec.get("dataset_kwargs") or {}))[split])
    except Exception:  # noqa: BLE001 - data the task cannot load here is data not checked, not a failed run
        return Benchmark(name, source, None)
    field_name = _field_of(spec.get("doc_to_text"))
    texts = [t for row in rows if (t := _text_of(row, field_name)) is not None]
    return Benchmark(name, source, texts, identity=hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16])


def _evalplus_benchmark(d: dict[str, Any]) -> Benchmark:
    import json

    from harness.datasets_seed import evalplus_cache

    stem = {"humaneval": "HumanEvalPlus", "mbpp": "MbppPlus"}[d["dataset"]]
    path = evalplus_cache() / f"{stem}-{d['version']}.jsonl"
    if not path.is_file():
        return Benchmark(d["benchmark"], path.name, None)
    data = path.read_bytes()
    rows = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
    return Benchmark(d["benchmark"], path.name, [r["prompt"] for r in rows if isinstance(r.get("prompt"), str)],
                     identity=hashlib.sha256(data).hexdigest()[:16])


def load_benchmarks(suites: list[dict[str, Any]]) -> list[Benchmark]:
    """Every benchmark of the (loaded) suites with its problem texts, or texts=None where no local copy exists."""
    out: dict[str, Benchmark] = {}
    for suite in suites:
        covered: set[str] = set()
        lm = suite.get("lm_eval") or {}
        include = Path(lm["include_path"]) if lm.get("include_path") else None
        tasks = _task_files(include) if include is not None and include.is_dir() else {}
        for t in lm.get("tasks") or []:
            if t["task"] not in tasks or t["benchmark"] in out:
                continue  # a built-in lm-eval task: checked through the datasets the suite lists
            _, spec = tasks[t["task"]]
            if isinstance(spec.get("custom_dataset"), dict):
                out[t["benchmark"]] = _custom_benchmark(t["benchmark"], include, spec)  # type: ignore[arg-type]
            elif isinstance(spec.get("dataset_path"), str):
                covered.add(spec["dataset_path"])
                split = spec.get("test_split") or "test"
                out[t["benchmark"]] = _hf_benchmark(t["benchmark"], spec["dataset_path"], spec.get("dataset_name"),
                                                    [split], _field_of(spec.get("doc_to_text")))
        for d in suite.get("datasets") or []:
            if d["path"] in covered or d["path"] in out:
                continue
            out[d["path"]] = _hf_benchmark(d["path"], d["path"], d.get("config"), list(d["splits"]), None)
        for d in (suite.get("evalplus") or {}).get("datasets") or []:
            if d["benchmark"] not in out:
                out[d["benchmark"]] = _evalplus_benchmark(d)
    return list(out.values())


def identities(benchmarks: list[Benchmark]) -> dict[str, str | None]:
    """What each benchmark's local copy is (None: none), for fingerprints and manifests."""
    return {b.name: b.identity for b in benchmarks}
