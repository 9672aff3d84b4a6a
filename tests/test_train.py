"""The train stage and its recipe surface: the paper recipes' Axolotl configs for 8 GPUs, launchers (one machine,
several machines, Slurm), config errors stopped before launch at the recipe line, seeds, held-out checkpoint
selection and LoRA merging (the last two train a tiny model for real on the CPU)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from harness.axolotl.config import (
    ConfigError,
    assumed_gpu_capabilities,
    read_config,
    render_axolotl_config,
    validate_config,
)
from harness.axolotl.launch import Launch, build_command
from harness.errors import RecipeError
from harness.paths import PROJECT_ROOT, RECIPES_DIR
from harness.recipe import load_recipes
from harness.recipe.schema import TrainSpec
from harness.stages import selection as selection_module
from harness.stages import train as train_stage
from harness.stages.base import StageContext, StageInput
from harness.store import RunStore, read_jsonl
from tests.helpers.tiny_model import build_random_tiny_model

PAPER = {"qwen-math-7b-claude.yaml": (2, 4, 4096), "llama-3.1-8b-llama-3.3-70b.yaml": (2, 4, 8192),
         "s1.1-3b-s1.1-32b.yaml": (1, 8, 16384)}
TINY = """\
name: t
data: {path: data/tiny/train.jsonl, limit: 40}
student: {model: tiny}
teacher: {provider: oracle, model: oracle}
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def _render(recipe, tmp: Path, *, on_gpu: bool, seed: int = 0, model: str | None = None) -> dict:
    return render_axolotl_config(recipe.train, base_model=model or recipe.student.model,
                                 dataset_path=tmp / "d.jsonl", output_dir=tmp / "o", prepared_dir=tmp / "p",
                                 seed=seed, on_gpu=on_gpu, recipe_dir=Path(recipe.source_path).parent)


# --- the paper's setup --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_recipes_render_the_papers_setup_for_8_gpus(name: str, tmp_path: Path) -> None:
    [recipe] = load_recipes(RECIPES_DIR / name)
    cfg = _render(recipe, tmp_path, on_gpu=True)
    micro, accumulation, seq = PAPER[name]
    assert (cfg["micro_batch_size"], cfg["gradient_accumulation_steps"]) == (micro, accumulation)
    assert cfg["micro_batch_size"] * cfg["gradient_accumulation_steps"] * recipe.train.world_size == 64
    assert recipe.train.world_size == 8 and recipe.train.launcher.kind == "torchrun"
    assert cfg["learning_rate"] == 1e-6 and cfg["num_epochs"] == 1 and cfg["sequence_len"] == seq
    assert cfg["lr_scheduler"] == "cosine" and cfg["warmup_ratio"] == 0.1
    assert cfg["sample_packing"] is True and cfg["pad_to_sequence_len"] is True
    assert cfg["bf16"] is True and cfg["fp16"] is False and cfg["gradient_checkpointing"] is True
    assert "adapter" not in cfg  # full fine-tune
    ds = json.loads(Path(cfg["deepspeed"]).read_text())
    assert Path(cfg["deepspeed"]).name == "zero3.json" and ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True  # a full HF model at the end
    assert ds["train_micro_batch_size_per_gpu"] == "auto" and ds["bf16"]["enabled"] == "auto"
    assert cfg["save_steps"] == 200 and "save_total_limit" not in cfg  # every checkpoint kept for selection
    assert build_command(tmp_path / "c.yaml", launcher=recipe.train.launcher)[-2:] == ["--nproc_per_node", "8"]
    # On this CPU box the same recipe renders a one-process CPU config.
    cpu = _render(recipe, tmp_path, on_gpu=False)
    assert cpu["bf16"] is False and "deepspeed" not in cpu and cpu["micro_batch_size"] == micro


def test_paper_configs_pass_axolotl_validation_for_a_gpu_node(tmp_path: Path) -> None:
    for name in PAPER:
        [recipe] = load_recipes(RECIPES_DIR / name)
        cfg = _render(recipe, tmp_path, on_gpu=True)
        assert validate_config(cfg, capabilities=assumed_gpu_capabilities(8), normalize=False,
                               check_capabilities=False) == [], name


# --- schema: the launcher block and cross-checks ------------------------------------------------------------


def test_launcher_block_shorthand_and_legacy_num_processes() -> None:
    assert TrainSpec(launcher="torchrun").launcher.kind == "torchrun"
    legacy = TrainSpec(launcher="accelerate", num_processes=4, global_batch_size=64)
    assert legacy.launcher.num_processes == 4 and legacy.world_size == 4
    spec = TrainSpec(launcher={"kind": "torchrun", "num_processes": 8, "num_machines": 2}, global_batch_size=64)
    assert spec.world_size == 16
    assert TrainSpec.model_validate(spec.model_dump()).model_dump() == spec.model_dump()
    assert render_axolotl_config(spec, base_model="/m", dataset_path=Path("d"), output_dir=Path("o"),
                                 prepared_dir=Path("p"), seed=0, on_gpu=True)["gradient_accumulation_steps"] == 1


@pytest.mark.parametrize(("train", "needle", "pattern"), [
    ("global_batch_size: 64\n  num_processes: 2", "num_processes", r"`python` runs one process"),
    ("launcher:\n    kind: torchrun\n    num_processes: 3\n  global_batch_size: 64", "global_batch_size",
     r"must be divisible by the number of training processes \(3 ="),
    ("launcher: {kind: torchrun, num_processes: 4}\n  num_processes: 2", "num_processes: 2", r"keep one"),
    ("deepspeed: zero9", "deepspeed", r"unknown DeepSpeed preset 'zero9'.*zero3_offload"),
    ("deepspeed: zero2\n  fsdp: {}", "fsdp", r"cannot be combined"),
    ("launcher: tochrun", "launcher", r"launcher.kind"),
    ("select_checkpoint: {holdout: 40}", "select_checkpoint", r"nothing left to train on"),
])
def test_train_block_problems_are_located(tmp_path: Path, train: str, needle: str, pattern: str) -> None:
    import re

    recipe = _write(tmp_path / "r.yaml", TINY + f"train:\n  {train}\n")
    with pytest.raises(RecipeError) as err:
        load_recipes(recipe)
    problem = err.value.problems[0]
    assert problem.file == str(recipe) and problem.line == _line_of(recipe, f"{needle}"), problem
    assert re.search(pattern, problem.message), problem.message


# --- launching on one or several machines -------------------------------------------------------------------


def test_multi_machine_launcher_arguments(tmp_path: Path) -> None:
    torch2 = Launch(kind="torchrun", num_processes=8, num_machines=2, machine_rank=1, main_process_ip="node-a",
                    main_process_port=29511)
    cmd = build_command(tmp_path / "c.yaml", launcher=torch2)
    assert cmd[cmd.index("--"):] == ["--", "--nnodes", "2", "--node_rank", "1", "--nproc_per_node", "8",
                                     "--master_addr", "node-a", "--master_port", "29511"]
    acc = Launch.of(torch2, kind="accelerate", machine_rank=0)
    assert acc.launcher_args() == ["--multi_gpu", "--num_processes", "16", "--num_machines", "2", "--machine_rank",
                                   "0", "--main_process_ip", "node-a", "--main_process_port", "29511"]
    with pytest.raises(ValueError, match="main_process_ip"):
        build_command(tmp_path / "c.yaml", launcher=Launch(kind="torchrun", num_processes=8, num_machines=2))
    assert build_command(tmp_path / "c.yaml", launcher="python")[-2:] == ["--launcher", "python"]


def test_fsdp_and_deepspeed_rendering(tmp_path: Path) -> None:
    custom = _write(tmp_path / "my_ds.json", json.dumps({"zero_optimization": {"stage": 2}}))
    recipe = _write(tmp_path / "r.yaml", TINY + "train: {launcher: {kind: torchrun, num_processes: 8}, "
                                                "global_batch_size: 64, deepspeed: my_ds.json}\n")
    [r] = load_recipes(recipe)
    assert _render(r, tmp_path, on_gpu=True)["deepspeed"] == str(custom.resolve())
    params = train_stage.stage_params(r, 0)
    assert params["deepspeed_config"] == {"zero_optimization": {"stage": 2}}  # editing the JSON retrains
    assert "main_process_ip" not in params["train"]["launcher"]
    missing = r.model_copy(update={"train": r.train.model_copy(update={"deepspeed": "nope.json"})})
    with pytest.raises(ConfigError, match="nope.json"):
        _render(missing, tmp_path, on_gpu=True)
    fsdp = TrainSpec(launcher={"kind": "torchrun", "num_processes": 8}, fsdp={"offload_params": True,
                     "transformer_layer_cls_to_wrap": "Qwen2DecoderLayer"})
    kw = {"base_model": "Qwen/Qwen2.5-Math-7B", "dataset_path": tmp_path / "d", "output_dir": tmp_path / "o",
          "prepared_dir": tmp_path / "p", "seed": 0}
    cfg = render_axolotl_config(fsdp, on_gpu=True, **kw)
    assert cfg["fsdp_version"] == 2 and cfg["gradient_checkpointing"] is False
    assert cfg["fsdp_config"]["offload_params"] is True and cfg["fsdp_config"]["activation_checkpointing"] is True
    assert cfg["fsdp_config"]["transformer_layer_cls_to_wrap"] == "Qwen2DecoderLayer"
    assert cfg["fsdp_config"]["final_state_dict_type"] == "FULL_STATE_DICT"
    assert validate_config(cfg, capabilities=assumed_gpu_capabilities(8), normalize=False,
                           check_capabilities=False) == []
    cpu = render_axolotl_config(fsdp, on_gpu=False, **kw)
    assert "fsdp_version" not in cpu and "fsdp_config" not in cpu


def test_slurm_script_runs_every_node_and_records_once(tmp_path: Path) -> None:
    recipe = _write(tmp_path / "r.yaml", TINY + "variants: [base, cgd]\nseeds: [0, 1]\n"
                    "train: {launcher: {kind: torchrun, num_processes: 4, num_machines: 2, main_process_port: 29600},"
                    " global_batch_size: 64}\n")
    out = tmp_path / "job.sbatch"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "train", "--emit-slurm", str(recipe), "--seed", "1",
                           "-o", str(out), "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "#SBATCH --nodes=2" in text and "#SBATCH --gpus-per-node=4" in text and "--until export" in text
    # Run it with stand-ins for Slurm (two nodes) and for Python, which only records how it was called.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    _write(bin_dir / "scontrol", "#!/bin/bash\nprintf 'gpu-17\\ngpu-18\\n'\n").chmod(0o755)
    _write(bin_dir / "srun", "#!/bin/bash\nwhile [[ $1 == --* ]]; do shift; done\n"
           "for n in 0 1; do SLURM_NODEID=$n \"$@\"; done\n").chmod(0o755)
    fake_py = _write(bin_dir / "fakepy", f"#!/bin/bash\necho \"$*\" >> {calls}\n")
    fake_py.chmod(0o755)
    script = _write(tmp_path / "job2.sbatch", text.replace(sys.executable, str(fake_py)))
    run = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "x"})
    assert run.returncode == 0, run.stderr
    lines = calls.read_text().splitlines()
    assert len(lines) == 4 and "run" in lines[0] and "--until export" in lines[0]
    assert "--node-rank 0 --main-process-ip gpu-17 --main-process-port 29600" in lines[1]
    assert "--node-rank 1 --main-process-ip gpu-17" in lines[2] and "--variant cgd --seed 1" in lines[2]
    assert lines[3].endswith("--variant cgd --seed 1")  # the first node records the model


def test_cgd_train_checks_its_arguments(tmp_path: Path) -> None:
    recipe = _write(tmp_path / "r.yaml", TINY + "variants: [base, cgd]\n")

    def cgd_train(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "harness.cli", "train", str(recipe), "--runs-dir",
                               str(tmp_path / "runs"), *args], capture_output=True, text=True, cwd=PROJECT_ROOT,
                              timeout=120)

    bogus = cgd_train("--variant", "sft")
    assert bogus.returncode == 2 and "--variant: 'sft' is not trained by this recipe" in bogus.stderr
    early = cgd_train("--variant", "cgd", "--seed", "0", "--node-rank", "1")
    assert early.returncode == 2 and "run `cgd run RECIPE --until export` once" in early.stderr, early.stderr
    assert "Traceback" not in bogus.stderr + early.stderr


# --- seeds, plans, held-out prompts, progress ---------------------------------------------------------------


def test_seeds_give_separate_models_and_configs(tmp_path: Path) -> None:
    from harness.pipeline import build_graph

    [recipe] = load_recipes(_write(tmp_path / "r.yaml", TINY + "variants: [base, sft]\nseeds: [0, 1, 2]\n"))
    graph = build_graph(recipe, RunStore(tmp_path / "runs"))
    trains = [graph.stages[f"train:sft:{s}"] for s in (0, 1, 2)]
    assert len({t.dir.path for t in trains}) == 3 and [t.params["seed"] for t in trains] == [0, 1, 2]
    assert [_render(recipe, tmp_path, on_gpu=False, seed=t.params["seed"])["seed"] for t in trains] == [0, 1, 2]


def test_plan_without_the_data_file_uses_data_limit(tmp_path: Path) -> None:
    from harness.estimate import plan_rows
    from harness.pipeline import Pipeline

    text = TINY.replace("data/tiny/train.jsonl", "data/not-there-yet.jsonl") + "variants: [base, cgd]\n"
    recipes = load_recipes(_write(tmp_path / "r.yaml", text))
    rows = plan_rows(Pipeline(recipes, RunStore(tmp_path / "runs"), Console(file=io.StringIO()),
                              require_data=False))
    assert {r["stage"]: r["requests"] for r in rows}["critique"] == 40


def test_holdout_is_chosen_by_id_and_removed_from_training(tmp_path: Path) -> None:
    records = [{"id": f"r{i}", "prompt": f"q{i}", "reference": str(i) if i % 5 else None} for i in range(30)]
    held = train_stage.holdout_records(records, 4)
    assert len(held) == 4 and all(r["reference"] for r in held)
    assert train_stage.holdout_records(list(reversed(records)), 4) == held  # order of the rows does not matter
    assert [r["id"] for r in train_stage.holdout_records(records[:20], 2)] == [
        r["id"] for r in held if int(r["id"][1:]) < 20][:2]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"id": r["id"], "messages": []}) + "\n" for r in records))
    kept, dropped = train_stage.write_without(data, {r["id"] for r in held}, tmp_path / "t.jsonl")
    assert (kept, dropped) == (26, 4)
    assert not {r["id"] for r in held} & {r["id"] for r in read_jsonl(tmp_path / "t.jsonl")}


def test_progress_shows_step_loss_lr_and_tokens_per_second() -> None:
    out = io.StringIO()
    progress = train_stage.TrainProgress(Console(file=out, force_terminal=False, width=200), "train:cgd:0",
                                         world_size=8, log_every_s=0.0)
    with progress:
        progress.update({"loss": 6.5, "learning_rate": 1e-6, "step": 1, "total_steps": 4, "tokens/total": 100})
        progress.update({"loss": 6.25, "learning_rate": 8.5e-7, "step": 2, "total_steps": 4,
                         "tokens/train_per_sec_per_gpu": 1000.0})
    text = out.getvalue()
    assert "train:cgd:0: step 2/4  loss 6.2500  lr 8.5e-07  8,000 tok/s" in text


# --- the stage: checks before launch, real training ---------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_random_tiny_model(tmp_path_factory.mktemp("train-model") / "student")


def _rows(n: int) -> tuple[list[dict], list[dict]]:
    data, export = [], []
    for i in range(n):
        a, b = 3 + i % 7, 2 + i % 5
        q, ref = f"Start with {a}, add {b}. What is the result?", f"{a}+{b}={a + b}. The answer is \\boxed{{{a + b}}}."
        data.append({"id": f"row-{i}", "prompt": q, "reference": ref})
        export.append({"id": f"row-{i}", "messages": [{"role": "user", "content": q, "training": False},
                                                       {"role": "assistant", "content": ref, "training": True}]})
    return data, export


def _stage(tmp_path: Path, model: Path, train_yaml: str, *, seed: int = 0, n: int = 16):
    recipe_file = _write(tmp_path / "r.yaml", TINY + train_yaml)
    [recipe] = load_recipes(recipe_file)
    data, export = _rows(n)
    dataset = tmp_path / "export.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in export))
    store = RunStore(tmp_path / "runs")
    d = store.stage("train", f"test-{seed}")
    d.path.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(f"train:cgd:{seed}", train_stage.stage_params(recipe, seed), {}, d, store,
                       Console(file=io.StringIO(), width=200), recipe)
    inputs = {"export:cgd": StageInput("export:cgd", [], {"dataset": str(dataset)}),
              "student": StageInput("student", [], {"model_path": str(model)}),
              "data": StageInput("data", data, {})}
    return recipe_file, ctx, inputs


def _no_launch(*args: object, **kwargs: object) -> None:
    raise AssertionError("axolotl train must not be launched")


def test_config_error_fails_before_launch_at_the_recipe_line(tiny_model: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.axolotl.cli import training_problems

    recipe_file, ctx, inputs = _stage(tmp_path, tiny_model, "train:\n  global_batch_size: 4\n  axolotl:\n"
                                                            "    optimizer: adamw_nonsense\n")
    monkeypatch.setattr("harness.axolotl.launch.run_axolotl_train", _no_launch)
    with pytest.raises(RecipeError) as err:
        train_stage.run(ctx, inputs)
    [problem] = err.value.problems
    assert (Path(problem.file).resolve(), problem.line) == (recipe_file, _line_of(recipe_file, "adamw_nonsense"))
    assert "train.axolotl.optimizer" in problem.message and "adamw_nonsense" in problem.message
    assert not (ctx.path / "train.log").exists()
    # `cgd validate` finds the same problem (Axolotl's schema only; nothing loaded).
    [found] = training_problems(load_recipes(recipe_file))
    assert (found.line, found.col) == (problem.line, problem.col)


def test_missing_gpus_fail_before_launch(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, ctx, inputs = _stage(tmp_path, tiny_model, "train: {global_batch_size: 4, launcher: {kind: torchrun, "
                                                  "num_processes: 2}}\n")
    monkeypatch.setattr("harness.axolotl.launch.run_axolotl_train", _no_launch)
    with pytest.raises(RecipeError, match="2 training processes need 2 GPUs, and this machine has none"):
        train_stage.run(ctx, inputs)


@pytest.mark.slow
def test_stage_trains_scores_checkpoints_and_keeps_the_best(tiny_model: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForCausalLM

    train_yaml = ("train:\n  learning_rate: 1.0e-3\n  global_batch_size: 2\n  sequence_len: 256\n"
                  "  select_checkpoint: {holdout: 4, every_steps: 2, max_tokens: 8, batch_size: 4}\n"
                  "  axolotl: {max_steps: 4}\n")
    _, ctx, inputs = _stage(tmp_path, tiny_model, train_yaml, seed=3)
    out = train_stage.run(ctx, inputs).info
    cfg = read_config(Path(out["config"]))
    assert cfg["seed"] == 3 and cfg["save_steps"] == 2 and out["config_hash"] and out["steps"] == 4
    held = set(out["holdout_ids"])
    assert len(held) == 4 and not held & {r["id"] for r in read_jsonl(Path(cfg["datasets"][0]["path"]))}
    selection = out["checkpoint_selection"]
    assert [s["checkpoint"] for s in selection["scores"]] == ["checkpoint-2", "checkpoint-4"]
    assert all(s["n"] == 4 and 0.0 <= s["accuracy"] <= 1.0 for s in selection["scores"])
    assert AutoModelForCausalLM.from_pretrained(out["model_path"]).config.model_type == "qwen2"
    assert not list((ctx.path / "model").glob("checkpoint-*/optimizer.pt"))  # training state pruned when done
    assert "train:cgd:3: step 4/4" in ctx.console.file.getvalue()
    # A re-run neither trains nor re-scores; a scorer that prefers step 2 keeps a copy of checkpoint-2.
    monkeypatch.setattr("harness.axolotl.launch.run_axolotl_train", _no_launch)
    again = train_stage.run(ctx, inputs).info
    assert again["checkpoint_selection"]["scores"] == selection["scores"]
    (ctx.path / selection_module.SCORES_FILE).unlink()
    monkeypatch.setattr(selection_module, "score_accuracy", lambda path, *a, **k: {
        "accuracy": 1.0 if Path(path).name == "checkpoint-2" else 0.5, "correct": 0, "n": 4})
    picked = train_stage.run(ctx, inputs).info
    assert picked["checkpoint_selection"]["selected"] == "checkpoint-2"
    assert picked["checkpoint_selection"]["metric"] == "accuracy" and not picked["checkpoint_selection"]["tie_break"]
    # Accuracy that ties on every checkpoint is broken by the held-out target loss, and says so.
    (ctx.path / selection_module.SCORES_FILE).unlink()
    monkeypatch.setattr(selection_module, "score_accuracy", lambda path, *a, **k: {"accuracy": 0.0, "correct": 0,
                                                                                    "n": 4})
    monkeypatch.setattr(selection_module, "score_loss", lambda path, rows: {
        "loss": 1.0 if Path(path).name == "checkpoint-2" else 2.0, "tokens": 10, "n": len(rows)})
    tied = train_stage.run(ctx, inputs).info["checkpoint_selection"]
    assert tied["tie_break"] == "loss" and tied["selected"] == "checkpoint-2"
    assert [s["loss"] for s in tied["scores"]] == [1.0, 2.0]
    selected = Path(picked["model_path"])
    assert selected == ctx.path / "selected" and (selected / "tokenizer.json").is_file()
    assert not (selected / "optimizer.pt").exists() and not (selected / "trainer_state.json").exists()
    assert AutoModelForCausalLM.from_pretrained(selected).config.model_type == "qwen2"


@pytest.mark.slow
def test_lora_adapter_is_merged_into_a_plain_model(tiny_model: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    _, ctx, inputs = _stage(tmp_path, tiny_model, "train:\n  method: lora\n  learning_rate: 1.0e-3\n"
                                                  "  global_batch_size: 2\n  sequence_len: 256\n"
                                                  "  axolotl: {max_steps: 2, lora_r: 4}\n")
    out = train_stage.run(ctx, inputs).info
    merged = Path(out["model_path"])
    assert merged.name == "merged" and (merged / "config.json").is_file()
    assert not (merged / "adapter_config.json").exists()
    assert (ctx.path / "model" / "adapter_model.safetensors").is_file()
    assert AutoModelForCausalLM.from_pretrained(merged).config.model_type == "qwen2"
