"""harness.axolotl: config rendering, Axolotl's own validation, the masking proof, and real `axolotl train`
runs (tiny random model, CPU, launcher python)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from harness.axolotl.config import batch_split, render_axolotl_config, validate_config, write_config
from harness.axolotl.launch import (
    TrainFailed,
    build_command,
    diagnose,
    latest_checkpoint,
    parse_log_dicts,
    run_axolotl_train,
)
from harness.axolotl.masking import MaskingError, check_trained_spans, render_example
from harness.prompts import load_style
from harness.recipe.schema import TrainSpec
from harness.store import fingerprint
from tests.helpers.tiny_model import build_random_tiny_model

PROBLEMS = [("What is 12 plus 7?", "12 plus 7 is 18.", "19"),
            ("What is 6 times 4?", "6 times 4 is 20.", "24"),
            ("What is 30 minus 9?", "30 minus 9 is 22.", "21"),
            ("What is 8 plus 5?", "8 plus 5 is 13.", "13")]


def _row(i: int) -> dict:
    prompt, draft, answer = PROBLEMS[i % len(PROBLEMS)]
    critique = "The arithmetic is wrong; recompute it.\nConclusion: wrong"
    msgs = [{**m, "training": False}
            for m in load_style("paper").train_messages("cgd", prompt=prompt, draft=draft, critique=critique)]
    msgs.append({"role": "assistant", "content": f"The answer is {answer}.", "training": True})
    return {"id": f"row-{i}", "messages": msgs}


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_random_tiny_model(tmp_path_factory.mktemp("axolotl-model") / "student")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("axolotl-data") / "dataset.jsonl"
    return _write_jsonl(path, [_row(i) for i in range(8)])


def _cfg(model: Path, data: Path, out: Path, **train: object) -> dict:
    spec = TrainSpec(**{"global_batch_size": 2, "sequence_len": 512, "learning_rate": 1e-3, **train})
    return render_axolotl_config(spec, base_model=str(model), dataset_path=data, output_dir=out / "model",
                                 prepared_dir=out / "prepared", seed=0, on_gpu=False)


# --- rendering ----------------------------------------------------------------------------------------------


def test_batch_arithmetic() -> None:
    assert batch_split(64, 1, None) == (8, 8)
    assert batch_split(12, 1, None) == (4, 3)
    assert batch_split(6, 2, None) == (1, 3)
    assert batch_split(64, 4, 2) == (2, 8)
    with pytest.raises(ValueError, match="micro_batch_size"):
        batch_split(12, 1, 8)
    with pytest.raises(ValueError, match="num_processes"):
        batch_split(10, 4, None)


def test_render_cpu_config(tmp_path: Path) -> None:
    spec = TrainSpec(global_batch_size=48, num_processes=2, learning_rate=2e-5, epochs=3, sequence_len=1024)
    cfg = render_axolotl_config(spec, base_model="/m", dataset_path=tmp_path / "d.jsonl",
                                output_dir=tmp_path / "o", prepared_dir=tmp_path / "p", seed=7, on_gpu=False)
    assert (cfg["micro_batch_size"], cfg["gradient_accumulation_steps"]) == (8, 3)
    assert cfg["micro_batch_size"] * cfg["gradient_accumulation_steps"] * spec.num_processes == 48
    assert cfg["bf16"] is False and cfg["fp16"] is False and cfg["tf32"] is False
    assert cfg["attn_implementation"] in ("eager", "sdpa")
    assert cfg["sample_packing"] is False and cfg["gradient_checkpointing"] is False
    ds = cfg["datasets"][0]
    assert ds["type"] == "chat_template" and ds["message_field_training"] == "training"
    assert ds["field_messages"] == "messages" and ds["roles_to_train"] == ["assistant"]
    assert ds["train_on_eos"] == "turn" and cfg["train_on_inputs"] is False
    assert cfg["chat_template"] == "tokenizer_default"
    assert (cfg["learning_rate"], cfg["num_epochs"], cfg["sequence_len"], cfg["seed"]) == (2e-5, 3, 1024, 7)
    assert cfg["optimizer"] == "adamw_torch" and cfg["val_set_size"] == 0
    assert cfg["save_strategy"] == "steps" and 0 < cfg["save_steps"] < 1 and cfg["save_total_limit"] >= 1
    assert cfg["output_dir"] == str(tmp_path / "o") and cfg["dataset_prepared_path"] == str(tmp_path / "p")


def test_render_lora_gpu_and_passthrough(tmp_path: Path) -> None:
    kw = {"base_model": "/m", "dataset_path": tmp_path / "d", "output_dir": tmp_path / "o",
          "prepared_dir": tmp_path / "p", "seed": 0}
    cpu = render_axolotl_config(TrainSpec(method="lora"), on_gpu=False, **kw)
    assert cpu["adapter"] == "lora" and cpu["lora_r"] > 0 and cpu["lora_target_linear"] is True
    assert all(cpu[k] is False for k in ("lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel",
                                         "lora_embedding_kernel"))
    gpu = render_axolotl_config(TrainSpec(method="lora"), on_gpu=True, **kw)
    assert gpu["bf16"] is True and gpu["sample_packing"] is True and "lora_mlp_kernel" not in gpu
    spec = TrainSpec(sample_packing=True, axolotl={"optimizer": "adamw_torch_fused", "lora_r": 4,
                                                   "datasets": [{"path": "x", "type": "alpaca"}]})
    merged = render_axolotl_config(spec, on_gpu=False, **kw)
    assert merged["optimizer"] == "adamw_torch_fused" and merged["lora_r"] == 4
    assert merged["sample_packing"] is True
    assert merged["datasets"] == [{"path": "x", "type": "alpaca"}]


def test_write_config_hash(tmp_path: Path) -> None:
    cfg = _cfg(Path("/m"), tmp_path / "d.jsonl", tmp_path)
    digest = write_config(cfg, tmp_path / "axolotl.yaml")
    assert yaml.safe_load((tmp_path / "axolotl.yaml").read_text()) == cfg
    assert digest == fingerprint(cfg) and len(digest) == 64
    assert write_config(dict(reversed(list(cfg.items()))), tmp_path / "again.yaml") == digest


# --- Axolotl's own validation -------------------------------------------------------------------------------


def test_axolotl_validation(tiny_model: Path, dataset: Path, tmp_path: Path) -> None:
    cfg = _cfg(tiny_model, dataset, tmp_path)
    assert validate_config(cfg) == []
    bad = _cfg(tiny_model, dataset, tmp_path, axolotl={"optimizer": "not_an_optimizer"})
    problems = validate_config(bad)
    assert any(p.startswith("optimizer") and "not_an_optimizer" in p for p in problems), problems
    problems = validate_config({**cfg, "sequence_len": "long", "learnin_rate": 0.1})
    assert any(p.startswith("sequence_len") for p in problems), problems
    assert any(p.startswith("learnin_rate") for p in problems), problems


# --- masking ------------------------------------------------------------------------------------------------


def test_masking_passes_on_correct_rows(tiny_model: Path, dataset: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    cfg = _cfg(tiny_model, dataset, tmp_path)
    start = time.monotonic()
    report = check_trained_spans(cfg, n=8)
    elapsed = time.monotonic() - start
    assert len(report.entries) == 8 and report.ok, [e.problem for e in report.entries]
    report.raise_for_problems()
    entry = report.entries[0]
    assert entry.id == "row-0" and entry.trained_text == "The answer is 19.<|im_end|>"
    assert not (tmp_path / "model").exists(), "the check must not write Axolotl outputs"
    text = render_example(entry, AutoTokenizer.from_pretrained(tiny_model))
    assert "The answer is 19." in text.plain and "Question: What is 12 plus 7?" in text.plain
    assert any("green" in str(span.style) for span in text.spans)
    print(f"masking check of 8 rows: {elapsed:.1f}s")


def test_masking_fails_without_training_flags(tiny_model: Path, tmp_path: Path) -> None:
    rows = [_row(0), {"id": "two-assistants", "messages": [
        {"role": "user", "content": "What is 8 plus 5?"},
        {"role": "assistant", "content": "8 plus 5 is 14."},
        {"role": "user", "content": "Critique: wrong, recompute."},
        {"role": "assistant", "content": "8 plus 5 is 13."},
    ]}]
    data = _write_jsonl(tmp_path / "noflags.jsonl", rows)
    report = check_trained_spans(_cfg(tiny_model, data, tmp_path), n=8)
    assert [e.ok for e in report.entries] == [True, False]
    bad = report.entries[1]
    assert "8 plus 5 is 14." in bad.trained_text and bad.expected_text == "8 plus 5 is 13.<|im_end|>"
    with pytest.raises(MaskingError, match="two-assistants") as err:
        report.raise_for_problems()
    assert "8 plus 5 is 14." in str(err.value)


def test_masking_fails_when_target_is_masked(tiny_model: Path, tmp_path: Path) -> None:
    row = _row(1)
    row["messages"][-1]["training"] = False
    row["messages"][-2]["training"] = True  # the prompt is trained, the answer masked
    data = _write_jsonl(tmp_path / "swapped.jsonl", [row])
    report = check_trained_spans(_cfg(tiny_model, data, tmp_path), n=1)
    assert not report.ok and "Question:" in report.entries[0].trained_text


# --- launching ----------------------------------------------------------------------------------------------


def test_command_and_log_parsing(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    assert build_command(cfg, launcher="python", num_processes=1)[1:] == [
        "train", str(cfg), "--launcher", "python"]
    assert build_command(cfg, launcher="accelerate", num_processes=4)[-4:] == [
        "--", "--multi_gpu", "--num_processes", "4"]
    ckpt = tmp_path / "checkpoint-3"
    assert build_command(cfg, launcher="torchrun", num_processes=2, resume_from=ckpt)[4:] == [
        "torchrun", "--resume-from-checkpoint", str(ckpt), "--", "--standalone", "--nproc_per_node", "2"]
    with pytest.raises(ValueError, match="one process"):
        build_command(cfg, launcher="python", num_processes=2)
    line = (" 25%|##5  | 1/4 [00:00<00:00,  9.13it/s]   {'loss': '6.512', 'grad_norm': '4.235', "
            "'learning_rate': '0.001', 'tokens/trainable': 24, 'epoch': '0.25'}\r 50%|...")
    assert parse_log_dicts(line) == [{"loss": 6.512, "grad_norm": 4.235, "learning_rate": 0.001,
                                      "tokens/trainable": 24, "epoch": 0.25}]
    assert parse_log_dicts("[INFO] config: {'a': 1}") == []
    assert diagnose("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate") == "out of memory"
    assert "config" in diagnose("pydantic_core._pydantic_core.ValidationError: 1 validation error for X")
    assert diagnose("ModuleNotFoundError: No module named 'flash_attn'") == "missing package (flash_attn)"
    assert diagnose("AssertionError: Torch not compiled with CUDA enabled") == "missing GPU/CUDA"
    assert diagnose("something else") == "see the log"


@pytest.mark.slow
def test_train_produces_loadable_model(tiny_model: Path, dataset: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    cfg = _cfg(tiny_model, dataset, tmp_path, axolotl={"max_steps": 4})
    write_config(cfg, tmp_path / "axolotl.yaml")
    seen: list[dict] = []
    result = run_axolotl_train(tmp_path / "axolotl.yaml", log_path=tmp_path / "train.log", launcher="python",
                               num_processes=1, env=dict(os.environ), on_progress=seen.append)
    assert result.output_dir == tmp_path / "model" and result.resumed_from is None
    assert result.steps == 4 and isinstance(result.final_loss, float)
    assert [e["step"] for e in seen if "loss" in e] == [1, 2, 3, 4]
    assert all("learning_rate" in e and "epoch" in e for e in seen if "loss" in e)
    model = AutoModelForCausalLM.from_pretrained(result.output_dir)
    assert model.config.model_type == "qwen2"
    assert "axolotl train" in (tmp_path / "train.log").read_text()
    print(f"tiny train (4 steps, launcher python): {result.seconds:.1f}s")


@pytest.mark.slow
def test_killed_run_resumes_from_checkpoint(tiny_model: Path, dataset: Path, tmp_path: Path) -> None:
    # A long run (checkpoint every 2 steps) is SIGKILLed once its first checkpoint is complete...
    cfg = _cfg(tiny_model, dataset, tmp_path,
               axolotl={"max_steps": 400, "save_steps": 2, "save_total_limit": 3})
    config = tmp_path / "axolotl.yaml"
    write_config(cfg, config)
    with (tmp_path / "first.log").open("w") as log:
        proc = subprocess.Popen(build_command(config, launcher="python", num_processes=1), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 90
            while latest_checkpoint(tmp_path / "model") is None and proc.poll() is None:
                assert time.monotonic() < deadline, "no checkpoint within 90 s"
                time.sleep(0.1)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-3000:]
    first = latest_checkpoint(tmp_path / "model")
    assert first is not None and not (tmp_path / "model" / "model.safetensors").exists()
    # ...and the next attempt (shortened, to keep the test quick) continues from it instead of step 0.
    write_config({**cfg, "max_steps": int(first.name.split("-")[1]) + 2}, config)
    seen: list[dict] = []
    result = run_axolotl_train(config, log_path=tmp_path / "train.log", launcher="python", num_processes=1,
                               env=dict(os.environ), on_progress=seen.append)
    assert result.resumed_from is not None and result.resumed_from.name.startswith("checkpoint-")
    assert result.resumed_from.parent == tmp_path / "model"
    assert result.steps == int(result.resumed_from.name.split("-")[1]) + 2
    assert len([e for e in seen if "loss" in e]) == 2, "only the missing steps run"
    assert "resuming from" in (tmp_path / "train.log").read_text()
    assert (tmp_path / "model" / "model.safetensors").exists()


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


@pytest.mark.slow
def test_interrupt_stops_the_child(tiny_model: Path, dataset: Path, tmp_path: Path) -> None:
    cfg = _cfg(tiny_model, dataset, tmp_path, axolotl={"max_steps": 400, "save_steps": None})
    config = tmp_path / "axolotl.yaml"
    write_config(cfg, config)

    def ctrl_c(entry: dict) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_axolotl_train(config, log_path=tmp_path / "train.log", launcher="python", num_processes=1,
                          env=dict(os.environ), on_progress=ctrl_c)
    assert _processes_mentioning(str(config)) == []


@pytest.mark.slow
def test_failed_run_explains_itself(tiny_model: Path, dataset: Path, tmp_path: Path) -> None:
    cfg = _cfg(tiny_model, dataset, tmp_path, axolotl={"sequence_len": "not a number"})
    write_config(cfg, tmp_path / "axolotl.yaml")
    with pytest.raises(TrainFailed) as err:
        run_axolotl_train(tmp_path / "axolotl.yaml", log_path=tmp_path / "train.log", launcher="python",
                          num_processes=1, env=dict(os.environ))
    assert err.value.likely_cause.startswith("config error")
    assert "sequence_len" in err.value.log_tail and len(err.value.log_tail.splitlines()) <= 60
