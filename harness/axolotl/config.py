"""Render an Axolotl config from a recipe's `train:` block, write it, and check it with Axolotl's validation.

The dataset is chat-format JSONL (`{"id", "messages": [{"role", "content", "training"}, ...]}`) where only the
final assistant turn has `training: true`. Axolotl honours those flags only when the dataset config names the
field (`message_field_training: training`); without it they are silently ignored (notes/axolotl.md §4).
"""

from __future__ import annotations

import copy
import importlib.util
import os
from pathlib import Path
from typing import Any

import yaml

from harness.dicts import deep_merge
from harness.errors import HarnessError
from harness.recipe.schema import TrainSpec
from harness.store import atomic_write_text, fingerprint

MICRO_BATCH_CHOICES = (8, 4, 2, 1)
SAVES_PER_RUN = 4
"""Checkpoints per run (save_steps is a ratio of the total steps), so a killed run loses at most a quarter."""
SAVE_TOTAL_LIMIT = 2
LORA_DEFAULTS = {"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "lora_target_linear": True}
LORA_KERNEL_FLAGS = ("lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel", "lora_embedding_kernel")
DEEPSPEED_DIR = Path(__file__).parent / "deepspeed"
"""The DeepSpeed presets (`train.deepspeed: zero2`); Axolotl's wheel ships none and fetching them needs GitHub."""


class ConfigError(HarnessError, ValueError):
    """A train spec that cannot be turned into an Axolotl config (the user's to fix: exit code 2)."""


def batch_split(global_batch_size: int, num_processes: int, micro_batch_size: int | None) -> tuple[int, int]:
    """(micro_batch_size, gradient_accumulation_steps); micro x accumulation x processes == global batch."""
    if global_batch_size % num_processes:
        raise ConfigError(f"train.global_batch_size ({global_batch_size}) is not divisible by the "
                          f"{num_processes} training processes (launcher num_processes x num_machines)")
    per_process = global_batch_size // num_processes
    if micro_batch_size is None:
        micro_batch_size = next(m for m in MICRO_BATCH_CHOICES if per_process % m == 0)
    if per_process % micro_batch_size:
        raise ConfigError(f"train.micro_batch_size ({micro_batch_size}) does not divide the per-process "
                          f"batch ({global_batch_size} / {num_processes} processes = {per_process})")
    return micro_batch_size, per_process // micro_batch_size


def deepspeed_presets() -> list[str]:
    return sorted(p.stem for p in DEEPSPEED_DIR.glob("*.json"))


def resolve_deepspeed(value: str, recipe_dir: Path | None = None) -> Path:
    """A preset name -> the shipped JSON; a path -> absolute (relative: to the recipe's folder, else the working
    folder)."""
    if value in deepspeed_presets():
        return DEEPSPEED_DIR / f"{value}.json"
    raw = Path(value).expanduser()
    candidates = [raw] if raw.is_absolute() else [*([recipe_dir / raw] if recipe_dir else []), Path.cwd() / raw]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise ConfigError(f"train.deepspeed: no DeepSpeed config '{value}' (looked at "
                      f"{', '.join(map(str, candidates))}); presets: {', '.join(deepspeed_presets())}")


def render_fsdp(fsdp: Any) -> dict[str, Any]:
    """Axolotl's FSDP2 keys for a recipe's `train.fsdp` block."""
    conf = {"offload_params": fsdp.offload_params, "activation_checkpointing": fsdp.activation_checkpointing,
            "auto_wrap_policy": fsdp.auto_wrap_policy, "state_dict_type": fsdp.state_dict_type,
            "final_state_dict_type": "FULL_STATE_DICT", "reshard_after_forward": fsdp.reshard_after_forward,
            "cpu_ram_efficient_loading": fsdp.cpu_ram_efficient_loading}
    if fsdp.transformer_layer_cls_to_wrap:
        conf["transformer_layer_cls_to_wrap"] = fsdp.transformer_layer_cls_to_wrap
    return {"fsdp_version": 2, "fsdp_config": conf}


def cpu_omissions(train: TrainSpec) -> list[str]:
    """The recipe's GPU-only settings a run without a GPU leaves out (for the stage to say so)."""
    left = []
    if train.deepspeed:
        left.append(f"DeepSpeed ({train.deepspeed})")
    if train.fsdp is not None:
        left.append("FSDP")
    return left


def _has_flash_attn() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def _gpu_packing_default() -> bool:
    """Pack on GPUs, except with torch sdpa on a pre-Hopper GPU: Axolotl warns that sdpa + bf16 + packing may
    train with 0.0 loss there. Without flash-attn and without a visible GPU we pack (the GPU is elsewhere)."""
    if _has_flash_attn():
        return True
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_capability() >= (9, 0)
    except (ImportError, RuntimeError, AssertionError):
        pass
    return True


def render_axolotl_config(train: TrainSpec, *, base_model: str, dataset_path: Path, output_dir: Path,
                          prepared_dir: Path, seed: int, on_gpu: bool, recipe_dir: Path | None = None) -> dict:
    """The Axolotl config (a plain dict) for one training run; `train.axolotl` keys are merged on top.

    The CGD protocol by default (full fine-tune, learning rate 1e-6, global batch 64 = micro batch x gradient
    accumulation x processes, 1 epoch, cosine with warm-up; packing and bf16 on GPU). Without a GPU the run is
    one CPU process: bf16/fp16 off, no packing, no DeepSpeed or FSDP, no Triton LoRA kernels.
    """
    micro, accumulation = batch_split(train.global_batch_size, train.world_size, train.micro_batch_size)
    packing = train.sample_packing if train.sample_packing is not None else on_gpu and _gpu_packing_default()
    cfg: dict[str, Any] = {
        "base_model": str(base_model),
        "tokenizer_config": str(base_model),
        "model_type": "AutoModelForCausalLM",
        "tokenizer_type": "AutoTokenizer",
        "chat_template": "tokenizer_default",
        "datasets": [{
            "path": str(dataset_path),
            "ds_type": "json",
            "type": "chat_template",
            "field_messages": "messages",
            "message_property_mappings": {"role": "role", "content": "content"},
            "message_field_training": "training",
            "roles_to_train": ["assistant"],
            "train_on_eos": "turn",
        }],
        "train_on_inputs": False,
        "dataset_prepared_path": str(prepared_dir),
        "val_set_size": 0,
        "output_dir": str(output_dir),
        "sequence_len": train.sequence_len,
        "sample_packing": packing,
        "pad_to_sequence_len": packing,
        "micro_batch_size": micro,
        "gradient_accumulation_steps": accumulation,
        "num_epochs": train.epochs,
        "learning_rate": train.learning_rate,
        "lr_scheduler": train.lr_scheduler,
        "warmup_ratio": train.warmup_ratio,
        "optimizer": "adamw_torch",
        "weight_decay": 0.0,
        "seed": seed,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": 1.0 / SAVES_PER_RUN,
        "save_total_limit": SAVE_TOTAL_LIMIT,
        "save_safetensors": True,
        "load_in_8bit": False,
        "load_in_4bit": False,
    }
    if on_gpu:
        cfg.update({"bf16": True, "fp16": False, "tf32": "auto", "gradient_checkpointing": True,
                    "attn_implementation": "flash_attention_2" if _has_flash_attn() else "sdpa"})
    else:
        # Both precision flags must be explicitly false on the CPU: left unset, Axolotl picks fp16 and the
        # first matmul fails with "mat1 and mat2 must have the same dtype".
        cfg.update({"bf16": False, "fp16": False, "tf32": False, "gradient_checkpointing": False,
                    "attn_implementation": "sdpa"})
    if train.method == "lora":
        cfg.update({"adapter": "lora", **LORA_DEFAULTS})
        if not on_gpu:
            # Axolotl auto-enables its Triton LoRA kernels, which allocate on cuda.
            cfg.update(dict.fromkeys(LORA_KERNEL_FLAGS, False))
    if on_gpu and train.deepspeed:
        cfg["deepspeed"] = str(resolve_deepspeed(train.deepspeed, recipe_dir))
    if on_gpu and train.fsdp is not None:
        cfg.update(render_fsdp(train.fsdp))
        if train.fsdp.activation_checkpointing:
            cfg["gradient_checkpointing"] = False  # FSDP checkpoints activations itself
    apply_format(cfg, train)
    select = train.select_checkpoint
    if select is not None:
        # Every checkpoint is kept until it has been scored on the held-out prompts.
        del cfg["save_total_limit"]
        if select.every_steps:
            cfg["save_steps"] = select.every_steps
    return deep_merge(cfg, train.axolotl)


def apply_format(cfg: dict[str, Any], train: TrainSpec) -> None:
    """The training format's keys (harness/formats/): a named chat template as `chat_template: jinja` with its
    text, its end-of-turn token as the tokenizer's EOS (LLaMA-Factory's replace_eos), the tokens its assistant slot
    trains after that token (qwen's "\\n", as `eot_tokens` trained per turn), and `train.overlong: truncate` as
    `excess_length_strategy`. A recipe on the defaults (chat, tokenizer template, drop) gets none of these keys."""
    from harness.formats import get_template

    if train.overlong != "drop":
        cfg["excess_length_strategy"] = train.overlong
    template = get_template(train.chat_template)
    if template is None:
        return
    cfg["chat_template"] = "jinja"
    cfg["chat_template_jinja"] = template.jinja
    cfg["special_tokens"] = {"eos_token": template.eos_token}
    if template.trained_after_eos:
        cfg["eot_tokens"] = list(template.trained_after_eos)
        for dataset in cfg["datasets"]:
            dataset["train_on_eot"] = "turn"


TRACKING_KEYS = frozenset({"use_wandb", "wandb_project", "wandb_entity", "wandb_name", "wandb_mode", "wandb_run_id",
                           "use_mlflow", "mlflow_tracking_uri", "mlflow_experiment_name", "mlflow_run_name"})
"""Where a training logs its curves (harness/tracking/axolotl.py): not part of the config's hash, so turning
tracking on does not count as a different training (no re-train, no lost resume)."""


def config_hash(cfg: dict) -> str:
    """sha256 hex of the canonical (key-sorted JSON) form of a config, without its TRACKING_KEYS."""
    return fingerprint({k: v for k, v in cfg.items() if k not in TRACKING_KEYS})


def write_config(cfg: dict, path: Path) -> str:
    """Write `cfg` as YAML atomically; return the sha256 of its canonical form."""
    text = "# Rendered by cgd-harness from the recipe's `train:` block; edits here are overwritten.\n"
    text += yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False, allow_unicode=True)
    atomic_write_text(Path(path), text)
    return config_hash(cfg)


def read_config(path: Path) -> dict:
    """A written config back as a dict."""
    with Path(path).open(encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


# ------------------------------------------------------------------------------------------------------------
# Axolotl's own validation


def cpu_capabilities() -> tuple[dict, dict]:
    """What Axolotl's capability checks see on a machine without a GPU."""
    import torch

    return ({"bf16": False, "fp8": False, "tf32": False, "n_gpu": 1, "compute_capability": None},
            {"torch_version": torch.__version__.split("+", 1)[0]})


def assumed_gpu_capabilities(n_gpu: int = 8) -> tuple[dict, dict]:
    """What Axolotl's checks would see on a node of Ampere-or-newer GPUs (to check a GPU config elsewhere)."""
    import torch

    return ({"bf16": True, "fp8": False, "tf32": True, "n_gpu": n_gpu, "compute_capability": "sm_90"},
            {"torch_version": torch.__version__.split("+", 1)[0]})


def local_capabilities() -> tuple[dict, dict]:
    """This machine's capabilities, probed as `axolotl train` probes them (axolotl.cli.config.gpu_capabilities,
    without importing axolotl.cli, whose import points Axolotl's logging at stdout); CPU values without a GPU."""
    import torch

    if not torch.cuda.is_available():
        return cpu_capabilities()
    props = torch.cuda.get_device_properties(0)
    version = props.major * 10 + props.minor
    return ({"bf16": torch.cuda.is_bf16_supported(), "fp8": version >= 89, "tf32": props.major >= 8,
             "n_gpu": int(os.environ.get("WORLD_SIZE", 1)), "compute_capability": f"sm_{props.major}{props.minor}"},
            {"torch_version": torch.__version__.split("+", 1)[0]})


def _format_pydantic(exc: Any) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p is not None)
        msg = err.get("msg", "invalid")
        problems.append(f"{loc}: {msg}" if loc else msg)
    return problems


def _optimizer_problem(name: Any) -> str | None:
    """Axolotl's schema takes any string as `optimizer`; the HF Trainer rejects unknown ones at start-up."""
    if name is None:
        return None
    from axolotl.utils.schemas.enums import CustomSupportedOptimizers
    from transformers.training_args import OptimizerNames

    known = {o.value for o in OptimizerNames} | {o.value for o in CustomSupportedOptimizers}
    value = getattr(name, "value", name)
    if value in known:
        return None
    return f"optimizer: unknown optimizer '{value}'; available: {', '.join(sorted(known))}"


def _capability_problems(cfg: dict, caps: dict) -> list[str]:
    """What Axolotl only warns about but the HF Trainer then refuses (e.g. bf16 without a bf16 GPU)."""
    problems = []
    if cfg.get("bf16") is True and not caps.get("bf16"):
        problems.append("bf16: true, but this machine has no bf16-capable GPU (training would fail); "
                        "set bf16: false and fp16: false on the CPU")
    if cfg.get("fp16") is True and not caps.get("compute_capability"):
        problems.append("fp16: true, but this machine has no GPU (training would fail); set fp16: false")
    return problems


def _unknown_keys(cfg: dict, model_cls: Any) -> list[str]:
    """Top-level keys Axolotl's schema does not know: it drops them silently, so a typo would do nothing."""
    known: set[str] = set()
    for name, field in model_cls.model_fields.items():
        known.add(name)
        if field.alias:
            known.add(field.alias)
        choices = getattr(field.validation_alias, "choices", None) or ()
        known.update(c for c in choices if isinstance(c, str))
        if isinstance(field.validation_alias, str):
            known.add(field.validation_alias)
    known.update({"axolotl_config_path", "capabilities", "env_capabilities"})
    return [f"{key}: unknown Axolotl key (Axolotl would ignore it)" for key in cfg if key not in known]


def axolotl_cfg(cfg: dict, *, capabilities: tuple[dict, dict] | None = None, normalize: bool = True) -> Any:
    """Validate (and normalize) a config as `axolotl train` does, in-process; return Axolotl's DictDefault.

    Raises pydantic's ValidationError (or ValueError) for a bad config.
    """
    os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    from axolotl.utils.config import validate_config as axolotl_validate
    from axolotl.utils.dict import DictDefault

    caps, env_caps = capabilities or local_capabilities()
    validated = axolotl_validate(DictDefault(copy.deepcopy(cfg)), capabilities=caps,
                                 env_capabilities=env_caps)
    if normalize:
        _normalize(validated)
    return validated


def _normalize(validated: Any) -> None:
    from axolotl.utils.config import normalize_cfg_datasets, normalize_config

    normalize_config(validated)
    normalize_cfg_datasets(validated)


def validate_config(cfg: dict, *, capabilities: tuple[dict, dict] | None = None, normalize: bool = True,
                    check_capabilities: bool = True) -> list[str]:
    """Run Axolotl's own config validation in-process; return readable problems (empty: the config is good).

    Each problem starts with the offending key. Besides Axolotl's schema this reports top-level keys Axolotl
    would silently ignore, optimizer names the HF Trainer would reject at start-up (Axolotl's schema accepts
    any string there) and bf16/fp16 without a GPU (Axolotl only warns). `capabilities` is (capabilities,
    env_capabilities) as Axolotl's `validate_config` takes them; default: this machine's (CPU values without
    a GPU). `normalize=False` skips Axolotl's normalization (which loads the base model's config), and
    `check_capabilities=False` the bf16/fp16-without-a-GPU checks: a schema-only check for another machine.
    """
    from axolotl.utils.schemas.config import AxolotlConfigWCapabilities
    from pydantic import ValidationError

    capabilities = capabilities or local_capabilities()
    problems = _unknown_keys(cfg, AxolotlConfigWCapabilities)
    if check_capabilities:
        problems += _capability_problems(cfg, capabilities[0])
    optimizer = _optimizer_problem(cfg.get("optimizer"))
    if optimizer:
        problems.append(optimizer)
    try:
        validated = axolotl_cfg(cfg, capabilities=capabilities, normalize=False)
    except ValidationError as exc:
        return problems + _format_pydantic(exc)
    except (ValueError, TypeError, KeyError) as exc:
        return [*problems, str(exc)]
    if not normalize:
        return problems
    try:
        _normalize(validated)  # loads the model config: catches a base_model that is not there
    except Exception as exc:  # report whatever Axolotl says, in its words
        problems.append(f"base_model: {type(exc).__name__}: {exc}")
    return problems
