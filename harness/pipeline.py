"""Build the stage graph for a recipe (or a matrix of them), skip what is done, run the rest.

A stage's fingerprint hashes its kind and version, the recipe fields it reads (`params`) and its inputs'
fingerprints, so recipes that share a prefix of work share the stage folders: a matrix over the critique
specificity probes, critiques and refines once and exports one dataset per member.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.console import Console
from rich.markup import escape

from harness.contract import check_output, graph_problems
from harness.errors import HarnessError, write_error
from harness.evaluation import load_suite
from harness.evaluation.suites import portable_suite
from harness.paths import PROJECT_ROOT
from harness.recipe import Recipe, recipe_to_dict
from harness.stages import STAGES
from harness.stages.base import RunPartial, StageContext, StageFailed, StageInput, StagePartial
from harness.store import RunStore, StageDir, atomic_write_json, file_lock, file_sha256, fingerprint, relativize_paths
from harness.variants import get_variant
from harness.variants.work import style_params, work_for

KINDS = ("data", "decontaminate", "student", "probe", "critique", "refine", "answer", "self_critique", "self_refine",
         "export", "train", "evaluate", "analysis", "report")
TEACHER_KINDS = ("critique", "refine", "answer")
STUDENT_KINDS = ("probe", "self_critique", "self_refine")  # stages that send to the student's back-end
# The tiny student warms up on its own split, so its drafts on the training prompts are not memorized answers.
TINY_WARMUP_DATA = PROJECT_ROOT / "data" / "tiny" / "warmup.jsonl"


@dataclass
class PlannedStage:
    name: str
    kind: str
    params: dict[str, Any]
    runtime: dict[str, Any]
    inputs: dict[str, str]  # input key -> upstream stage name (in the same recipe graph)
    fingerprint: str
    dir: StageDir
    recipe: Recipe

    @property
    def module(self) -> ModuleType:
        return STAGES[self.kind]


@dataclass
class RecipeGraph:
    recipe: Recipe
    stages: dict[str, PlannedStage] = field(default_factory=dict)
    redirect: dict[str, str] = field(default_factory=dict)  # upstream name -> the stage read instead (decontaminate)

    def add(self, store: RunStore, name: str, kind: str, params: dict[str, Any], inputs: dict[str, str] | None = None,
            runtime: dict[str, Any] | None = None) -> PlannedStage:
        inputs = {k: self.redirect.get(v, v) for k, v in (inputs or {}).items()}
        fp = fingerprint(kind, STAGES[kind].VERSION, params, {k: self.stages[v].fingerprint for k, v in inputs.items()})
        stage = PlannedStage(name, kind, params, runtime or {}, inputs, fp, store.stage(kind, fp), self.recipe)
        self.stages[name] = stage
        return stage


def resolve_data_path(recipe: Recipe, must_exist: bool = True) -> Path:
    """Absolute as given; else relative to the working folder, the recipe's folder or the project root.

    `must_exist=False` (plans): a missing file resolves against the recipe's folder instead of failing."""
    raw = Path(recipe.data.path)
    if raw.is_absolute():
        return raw
    recipe_dir = Path(recipe.source_path).parent if recipe.source_path else Path.cwd()
    for base in (Path.cwd(), recipe_dir, PROJECT_ROOT):
        if (base / raw).exists():  # a folder too, so that the check names it for what it is
            return (base / raw).resolve()
    if not must_exist:
        return (recipe_dir / raw).resolve()
    raise HarnessError(f"{recipe.source_path or 'recipe'}: data.path '{raw}' not found (looked in the working "
                       f"folder, the recipe's folder and {PROJECT_ROOT})")


SAMPLE_BYTES = 1 << 20


def _check_selection(recipe: Recipe, data_path: Path, sample: int = 500) -> None:
    """Refuse a checkpoint selection the data's answers cannot support (before anything is trained)."""
    import json

    from harness.recipe.loader import locate
    from harness.stages.selection import data_problem

    references = []
    with data_path.open(encoding="utf-8") as handle:
        for line in handle:
            if len(references) >= sample:
                break
            with contextlib.suppress(ValueError, AttributeError):
                references.append(json.loads(line).get(recipe.data.answer_field))
    problem = data_problem(recipe.train.select_checkpoint.metric, references)
    if problem:
        raise HarnessError(str(locate(recipe, "train.select_checkpoint", f"train.select_checkpoint: {problem}")))


def _model_identity(model: str) -> dict[str, Any]:
    """A hub id is its name; a local model folder is its content, not where it lies: each file's name, size and a
    hash of its bytes (for files over 2 MiB, of their first and last MiB: hashing GBs of weights is slow)."""
    path = Path(model)
    if not path.is_dir():
        return {"model": model}
    return {"model_files": [(p.name, p.stat().st_size, _sampled_hash(p))
                            for p in sorted(path.iterdir()) if p.is_file()]}


def _sampled_hash(path: Path) -> str:
    size = path.stat().st_size
    if size <= 2 * SAMPLE_BYTES:
        return file_sha256(path)
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        digest.update(handle.read(SAMPLE_BYTES))
        handle.seek(size - SAMPLE_BYTES)
        digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()


def build_graph(recipe: Recipe, store: RunStore, require_data: bool = True) -> RecipeGraph:
    """`require_data=False` (plans) accepts a data file that is not there yet."""
    from harness.stages import export as export_stage
    from harness.stages import train as train_stage

    g = RecipeGraph(recipe)
    from harness.data.params import data_stage  # per data.source; a plain jsonl recipe keeps its old params

    data_params, data_runtime = data_stage(recipe, require_data)
    g.add(store, "data", "data", data_params, runtime=data_runtime)
    from harness.stages import decontaminate as decontaminate_stage

    suites = _eval_suites(recipe)
    g.add(store, "decontaminate", "decontaminate", decontaminate_stage.stage_params(recipe, suites), {"data": "data"},
          {"suites": suites})
    if recipe.data.decontaminate == "drop":  # every later stage that reads the prompts reads them decontaminated
        g.redirect["data"] = "decontaminate"
    s = recipe.student
    if s.model == "tiny":
        warmup = TINY_WARMUP_DATA
        student_params = {"model": "tiny", "tiny": (s.tiny or _default_tiny()).model_dump(), "seed": recipe.seed,
                          "styles": sorted({recipe.critique.style, "generic"}), "train_sha256": file_sha256(warmup)}
        student_runtime = {"train_path": str(warmup)}
    else:
        student_params, student_runtime = _model_identity(s.model), {"model": s.model}
    g.add(store, "student", "student", student_params, runtime=student_runtime)

    style = style_params(recipe)
    specs = [get_variant(v) for v in recipe.variants]
    for work in work_for({spec.source for spec in specs if spec.trains}):  # what the variants train on, declared
        g.add(store, work.name, work.kind, work.params(recipe), work.inputs, work.runtime(recipe))

    # Fingerprinted without this checkout's paths; the stage reads the located suites from its runtime.
    eval_params = {"suites": [portable_suite(s) for s in suites], "limit": recipe.eval.limit}
    eval_runtime = {"batch_size": recipe.eval.batch_size, "backend": _eval_backend(recipe), "suites": suites}
    g.add(store, "evaluate:base", "evaluate", {**eval_params, "variant": "base", "seed": None, "label": "base"},
          {"model": "student"}, eval_runtime)
    for spec in specs:
        if not spec.trains:
            continue
        variant = spec.name
        export_params = {"variant": variant, "style": style, "keep_unverified": recipe.critique.keep_unverified}
        if spec.export_params is not None:
            export_params |= spec.export_params(recipe)
        export_params |= export_stage.stage_params(recipe)  # train.format etc., only when not the defaults
        g.add(store, f"export:{variant}", "export", export_params, {spec.source: spec.source, "student": "student"})
        for seed in recipe.train_seeds:
            train_name = f"train:{variant}:{seed}"
            g.add(store, train_name, "train", train_stage.stage_params(recipe, seed),
                  train_stage.stage_inputs(recipe, variant))
            g.add(store, f"evaluate:{variant}:{seed}", "evaluate",
                  {**eval_params, "variant": variant, "seed": seed, "label": f"{variant} (seed {seed})"},
                  {"model": train_name}, eval_runtime)
    if recipe.analysis:  # one cached stage per analysis (harness/analysis/), after the rest
        from harness.analysis import add_stages as add_analysis_stages

        add_analysis_stages(g, store, recipe)
    problems = graph_problems(g)
    if problems:
        from harness.recipe.loader import locate

        raise HarnessError("\n".join(str(locate(recipe, "variants", f"variants: {p}")) for p in problems))
    teachers = [st for st in g.stages.values() if st.kind in TEACHER_KINDS]
    for st in teachers:  # the recipe-wide budget_usd counts what the other teacher stages spent
        st.runtime["budget_peers"] = [str(o.dir.path) for o in teachers if o is not st]
    return g


def _eval_suites(recipe: Recipe) -> list[dict[str, Any]]:
    """The recipe's suites with its generation cap, added tasks and grader (optional eval keys) applied; a grader
    other than math_verify is part of a grading suite's hash, so it reaches the evaluate fingerprints. An
    eval.template (an official prompt) is applied to the suites it names, only when set."""
    ev = recipe.eval
    suites = [load_suite(name, max_gen_toks=ev.max_gen_toks, add_tasks=ev.add_tasks.get(name), grader=ev.grader)
              for name in ev.suites]
    if ev.template is not None:
        from harness.evaluation.prompts import apply_prompt_template

        suites = [apply_prompt_template(s, ev.template) for s in suites]
    return suites


def _eval_backend(recipe: Recipe) -> dict[str, Any]:
    """How evaluate runs models (speed, not results): eval.backend if set, else `vllm` when the student is served
    by vLLM (the same launcher settings), else `hf`."""
    ev, s = recipe.eval, recipe.student
    kind = ev.backend or ("vllm" if s.backend == "vllm" else "hf")
    serve = s.vllm.model_dump() if s.vllm is not None else {}
    spec = {"kind": kind, "serve": serve, "base_url": ev.base_url}
    if ev.loglikelihood:
        spec["loglikelihood"] = ev.loglikelihood
    return spec


def _default_tiny():
    from harness.recipe.schema import TinyStudentSpec

    return TinyStudentSpec()


def _with_upstream(graph: RecipeGraph, names: set[str]) -> set[str]:
    found: set[str] = set()
    todo = [n for n in names if n in graph.stages]
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo += graph.stages[name].inputs.values()
    return found


def describe_output(manifest: dict[str, Any]) -> str:
    """What a finished stage produced, in a few words (from its done.json manifest)."""
    info = manifest.get("info", {})
    if "examples" in info:
        return f"{info['examples']} examples"
    if "model_path" in info and "final_loss" in info:
        return f"model, final loss {info['final_loss']}"
    if "results" in info:
        return f"{info['results']} scores"
    if "model_path" in info:
        return "model"
    if info.get("failed"):
        return f"{manifest.get('records', 0)} records ({info['failed']} failed)"
    if "contaminated" in info:
        return (f"{info['contaminated']} of {info['prompts']} prompts match a benchmark, {info['duplicates']} "
                f"duplicates" + (f"; {info['dropped']} dropped" if "dropped" in info else ""))
    return f"{manifest.get('records', 0)} records"


def kind_included(kind: str, until: str | None) -> bool:
    return until is None or _rank(kind) <= _rank(until)


def _rank(kind: str) -> float:
    """A stage kind's place in the run order; a work stage a plugin registered comes before export."""
    return KINDS.index(kind) if kind in KINDS else KINDS.index("export") - 0.5


@dataclass
class StageResult:
    name: str
    kind: str
    status: str  # cached | done | skipped
    path: str
    records: int
    cost_usd: float
    info: dict[str, Any]


class Pipeline:
    def __init__(self, recipes: list[Recipe], store: RunStore, console: Console, require_data: bool = True) -> None:
        self.recipes = recipes
        self.store = store
        self.console = console
        self.graphs = [build_graph(r, store, require_data) for r in recipes]
        self._outputs: dict[str, StageInput] = {}  # by fingerprint
        self._checked: set[str] = set()  # done stages whose records were checked against their manifest this run
        from harness.tracking import session_for  # W&B / MLflow: reads what stages produced, no fingerprint

        self.tracking = session_for(self.graphs, store.root, console)

    def unique_stages(self, until: str | None = None, targets: set[str] | None = None) -> list[PlannedStage]:
        """Stages up to kind `until`; with `targets` (stage names), only those and what they need."""
        seen: dict[str, PlannedStage] = {}
        for graph in self.graphs:
            wanted = _with_upstream(graph, targets) if targets is not None else None
            for stage in graph.stages.values():
                if kind_included(stage.kind, until) and (wanted is None or stage.name in wanted):
                    seen.setdefault(stage.fingerprint, stage)
        return list(seen.values())

    def inputs_of(self, stage: PlannedStage) -> dict[str, StageInput]:
        """A planned stage's inputs (its upstream stages must be done)."""
        return self._load_inputs(stage, self._graph_of(stage))

    def run(self, until: str | None = None, targets: set[str] | None = None) -> list[dict[str, Any]]:
        """Run every recipe's missing stages (or only `targets` and what they need); return one summary per recipe
        (what `cgd run --json` prints)."""
        results: dict[str, StageResult] = {}
        held: set[str] = set()  # fingerprints of partial stages and of everything downstream of one
        partial: list[StagePartial] = []
        for stage in self.unique_stages(until, targets):
            graph_stages = self._graph_of(stage)
            if any(graph_stages[u].fingerprint in held for u in stage.inputs.values()):
                held.add(stage.fingerprint)
                results[stage.fingerprint] = StageResult(stage.name, stage.kind, "blocked", str(stage.dir.path), 0,
                                                         0.0, {})
                self.console.print(f"[yellow]∙[/yellow] {stage.name:<22} blocked  (an upstream stage is partial)")
                self.tracking.stage(stage, results[stage.fingerprint])
                continue
            try:
                results[stage.fingerprint] = self._run_stage(stage, results)
            except StagePartial as exc:  # keep going with stages that do not need it; exit 1 at the end
                held.add(stage.fingerprint)
                partial.append(exc)
                results[stage.fingerprint] = self._record_partial(stage, exc)
            self.tracking.stage(stage, results[stage.fingerprint])  # every stage, cached ones too
        summaries = []
        for graph in self.graphs:
            summaries.append(self._summarize(graph, results, until))
        if partial:
            raise RunPartial(", ".join(e.stage for e in partial),
                             "\n".join(str(e) for e in partial) + "\nStages left partial are not done; run the same "
                             "command again to send only the failed and missing requests.", summaries=summaries)
        return summaries

    def _record_partial(self, stage: PlannedStage, exc: StagePartial) -> StageResult:
        """A partial stage leaves `partial.json` (what failed and why) beside its journal; never `done.json`."""
        d = stage.dir
        ok = exc.total - exc.failed - exc.unsent
        with contextlib.suppress(OSError):
            atomic_write_json(d.path / "partial.json", {"stage": stage.name, "fingerprint": stage.fingerprint,
                                                        "records": exc.total, "ok": ok, "failed": exc.failed,
                                                        "unsent": exc.unsent, "message": str(exc),
                                                        "at": time.strftime("%Y-%m-%dT%H:%M:%S")})
        self.console.print(f"[red]✗[/red] {stage.name:<22} partial  {ok}/{exc.total} ok, {exc.failed} failed, "
                           f"{exc.unsent} unsent")
        from harness.stages.generation import read_spend

        spent = read_spend(d.path / "spend.jsonl")  # paid for, though the stage is not done
        return StageResult(stage.name, stage.kind, "partial", str(d.path), ok, round(spent, 6), {})

    def _load_inputs(self, stage: PlannedStage, graph_stages: dict[str, PlannedStage]) -> dict[str, StageInput]:
        inputs = {}
        for key, upstream_name in stage.inputs.items():
            upstream = graph_stages[upstream_name]
            if upstream.fingerprint not in self._outputs:
                d = upstream.dir
                if upstream.fingerprint not in self._checked and (damage := d.damage()) is not None:
                    raise HarnessError(f"stage {stage.name} cannot read its input {upstream.name}: {damage}; "
                                       "run it again to rebuild that stage")
                info = d.manifest().get("info", {})
                self._outputs[upstream.fingerprint] = StageInput(upstream.name, d.read_records(), info)
            inputs[key] = self._outputs[upstream.fingerprint]
        return inputs

    def _graph_of(self, stage: PlannedStage) -> dict[str, PlannedStage]:
        return next(g.stages for g in self.graphs if g.recipe is stage.recipe)

    def _run_stage(self, stage: PlannedStage, results: dict[str, StageResult]) -> StageResult:
        d = stage.dir
        still_valid = getattr(stage.module, "still_valid", None)  # evaluate: is the model's content unchanged?
        if d.is_done() and still_valid is not None and not still_valid(d.manifest(), self._load_inputs(
                stage, self._graph_of(stage))):
            self.console.print(f"[yellow]↻[/yellow] {stage.name:<22} its model changed since it ran; running again")
            d.manifest_path.unlink()
        if d.is_done() and (damage := d.damage()) is not None:
            if stage.kind in NOT_REBUILT:  # a model behind it: retraining is the user's call, not ours
                raise HarnessError(f"stage {stage.name}: {damage}; delete {d.path} to build it again")
            self.console.print(f"[yellow]↻[/yellow] {stage.name:<22} {escape(damage)}; rebuilding it (from its journal "
                               "and the request cache where it has them)")
            d.manifest_path.unlink()
        if d.is_done():
            self._checked.add(stage.fingerprint)
            manifest = d.manifest()
            self.console.print(f"[green]✓[/green] {stage.name:<22} cached   {escape(str(d.path))}")
            return StageResult(stage.name, stage.kind, "cached", str(d.path), manifest.get("records", 0),
                               manifest.get("info", {}).get("cost_usd", 0.0), manifest.get("info", {}))
        inputs = self._load_inputs(stage, self._graph_of(stage))
        self.console.print(f"[bold cyan]▶[/bold cyan] {stage.name:<22} running  {escape(str(d.path))}")
        d.path.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        with d.lock():
            ctx = StageContext(stage.name, stage.params, stage.runtime, d, self.store, self.console, stage.recipe)
            try:
                out = stage.module.run(ctx, inputs)
            except StageFailed:
                raise
            except HarnessError:
                raise
            except Exception as exc:  # a bug or an environment problem: fail this stage, keep finished work
                import traceback

                if (unwritable := write_error(exc)) is not None:  # read-only or full: say so, in one line
                    raise unwritable from None
                with contextlib.suppress(OSError):  # on a full disk the log cannot be written; the error still shows
                    (d.path / "error.log").write_text(traceback.format_exc())
                raise StageFailed(stage.name, f"{type(exc).__name__}: {exc}", traceback.format_exc()[-3000:]) from exc
            check_output(stage.name, tuple(stage.module.WRITES), out.records)
            info = {**out.info, "seconds": round(time.monotonic() - start, 2)}
            d.finish(out.records, {"info": info, "params_fingerprint": stage.fingerprint})
            (d.path / "partial.json").unlink(missing_ok=True)
        self._outputs[stage.fingerprint] = StageInput(stage.name, out.records, info)
        output = describe_output({"records": len(out.records), "info": info})
        self.console.print(f"[green]✓[/green] {stage.name:<22} done     {output}, {info['seconds']}s")
        return StageResult(stage.name, stage.kind, "done", str(d.path), len(out.records), info.get("cost_usd", 0.0),
                           info)

    def _summarize(self, graph: RecipeGraph, results: dict[str, StageResult], until: str | None) -> dict[str, Any]:
        run_dir = self.store.run_dir(graph.recipe.name)
        stages, datasets, sizes, models, result_rows = {}, {}, {}, {}, []
        decontamination: dict[str, Any] | None = None
        for name, stage in graph.stages.items():
            res = results.get(stage.fingerprint)
            if res is None:
                stages[name] = {"status": "skipped", "path": str(stage.dir.path), "records": 0, "cost_usd": 0.0}
                continue
            stages[name] = {"status": res.status, "path": res.path, "records": res.records, "cost_usd": res.cost_usd}
            if res.status in ("partial", "blocked"):
                continue
            if stage.kind == "export":
                datasets[stage.params["variant"]] = res.info["dataset"]
                sizes[stage.params["variant"]] = {k: res.info[k] for k in ("examples", "source_records", "left_out",
                                                                           "overlong") if k in res.info}
            elif stage.kind == "train":
                models[name.removeprefix("train:").replace(":", "@seed")] = res.info["model_path"]
            elif stage.kind == "student":
                models["base"] = res.info["model_path"]
            elif stage.kind == "evaluate":
                result_rows += stage.dir.read_records()
            elif stage.kind == "decontaminate":
                decontamination = {k: v for k, v in res.info.items() if k != "seconds"}
        summary: dict[str, Any] = {"recipe": graph.recipe.name, "run_dir": str(run_dir), "stages": stages,
                                   "datasets": datasets, "dataset_sizes": sizes, "models": models, "results": None,
                                   "cost_usd": round(sum(s["cost_usd"] or 0 for s in stages.values()), 6)}
        if graph.recipe.analysis:  # run.json `analysis`: name -> {tables, numbers, notes}
            from harness.analysis import results_of as analysis_results

            summary["analysis"] = analysis_results(stages, graph)
        run_dir.mkdir(parents=True, exist_ok=True)
        if result_rows:
            from harness.store import write_jsonl

            results_path = run_dir / "results.jsonl"
            write_jsonl(results_path, result_rows)
            summary["results"] = str(results_path)
        from harness.provenance import provenance

        atomic_write_json(run_dir / "run.json", relativize_paths(
            {**summary, "decontamination": decontamination, "recipe_config": recipe_to_dict(graph.recipe),
             "until": until, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), "provenance": provenance()},
            self.store.root))
        return summary


NOT_REBUILT = {"student", "train"}  # stages whose damaged output is reported, not silently rebuilt


def run_lock(store: RunStore, recipes: list[Recipe]):
    """One lock per recipe run dir (two runs of one recipe cannot collide); for a matrix, the base name's."""
    name = recipes[0].name.split("__")[0]
    return file_lock(store.root / ".locks" / f"{name}.lock", f"run '{name}'")
