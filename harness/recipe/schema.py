"""The typed recipe: every key a YAML recipe may hold, with a docstring per field.

Unknown keys are rejected (`extra="forbid"`). Single-field checks live on the fields; cross-field checks live in
`Recipe._cross_checks` so there is one place to read them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

VARIANTS = ("base", "sft", "distilled_sft", "cft", "cgd")
Variant = Literal["base", "sft", "distilled_sft", "cft", "cgd"]
Specificity = Literal["specific", "irrelevant", "generic", "none"]


class CrossCheckError(ValueError):
    """Problems that involve several fields, each as (dotted path, message), so the loader can locate each one."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path}: {msg}" for path, msg in problems))
        self.problems = problems


class Strict(BaseModel):
    """Base for every recipe block: unknown keys are errors, field docstrings are descriptions."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


class DataSpec(Strict):
    source: Literal["jsonl"] = "jsonl"
    """Where prompts come from. `jsonl`: a local JSON-lines file."""
    path: str
    """Path of the data file, relative to the recipe file's folder's project root or absolute."""
    prompt_field: str = "question"
    """Column holding the prompt x."""
    answer_field: str = "answer"
    """Column holding the dataset's own answer (used by SFT and for verification)."""
    id_field: str | None = None
    """Column with a stable row id; when absent the id is a hash of the row."""
    limit: int | None = Field(default=None, ge=1)
    """Use only the first N rows (after dropping rows without a prompt)."""


class GenerationSpec(Strict):
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    """Sampling temperature; 0 means greedy."""
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    """Nucleus sampling mass."""
    max_tokens: int = Field(default=512, ge=1)
    """Cap on generated tokens per sample."""
    n: int = Field(default=1, ge=1)
    """Samples per prompt."""
    seed: int | None = None
    """Per-request sampling seed where the back-end supports it."""


class ConnectionSpec(Strict):
    """Keys shared by students and teachers so either can be served remotely."""

    base_url: str | None = None
    """Endpoint of an OpenAI-compatible server (or a provider's alternate URL)."""
    api_key_env: str | None = None
    """Name of the environment variable holding the API key. Keys are never written anywhere."""
    max_concurrency: int = Field(default=16, ge=1)
    """Requests in flight at once."""
    requests_per_minute: float | None = Field(default=None, gt=0)
    """Client-side request rate limit."""
    tokens_per_minute: float | None = Field(default=None, gt=0)
    """Client-side token rate limit (input + output)."""
    timeout_s: float = Field(default=600.0, gt=0)
    """Per-request timeout in seconds."""
    max_retries: int = Field(default=6, ge=0)
    """Retries for transient failures (429, 5xx, timeouts)."""


class TinyStudentSpec(Strict):
    """Settings of the locally built tiny student (only with `student.model: tiny`)."""

    warmup_steps: int = Field(default=1400, ge=0)
    """Plain-torch warm-up steps on reference solutions, so drafts are sometimes right and often wrong."""
    hidden_size: int = Field(default=128, ge=32)
    """Model width."""
    num_layers: int = Field(default=4, ge=1)
    """Decoder layers."""


class StudentSpec(ConnectionSpec):
    model: str
    """`tiny` (built locally), a local model folder, or a model name the back-end knows."""
    backend: str = "hf"
    """Generation back-end for drafts: hf, openai_compat, vllm, ... (see `cgd backends`)."""
    batch_size: int = Field(default=32, ge=1)
    """Prompts per batched `generate` call (hf back-end)."""
    generation: GenerationSpec = Field(default_factory=lambda: GenerationSpec(temperature=0.0, max_tokens=256))
    """How drafts are sampled."""
    tiny: TinyStudentSpec | None = None
    """Tiny-world student settings; only valid with `model: tiny`."""


class TeacherSpec(ConnectionSpec):
    provider: str
    """Teacher back-end: oracle, openai, anthropic, openai_compat, vllm, hf (see `cgd backends`)."""
    model: str
    """Model name sent to the provider."""
    generation: GenerationSpec = Field(default_factory=lambda: GenerationSpec(temperature=0.0, max_tokens=512))
    """How critiques, refinements and answers are sampled."""
    budget_usd: float | None = Field(default=None, gt=0)
    """Stop a teacher stage cleanly before its spend would pass this many dollars."""
    price: dict[str, float] | None = None
    """Override of the price table, USD per million tokens: keys input, output (and cached_input)."""


class CritiqueSpec(Strict):
    style: str = "paper"
    """Prompt style from prompts/ (critique, refine and training-input templates)."""
    specificity: Specificity = "specific"
    """Critique put in the CGD input: the real one, one of another problem, boilerplate, or none."""
    keep_unverified: Literal["keep", "drop", "count"] = "keep"
    """Refinements whose answer fails the grader: keep them, drop them from training, or keep and only count."""


class TrainSpec(Strict):
    method: Literal["full", "lora"] = "full"
    """Full fine-tune or LoRA."""
    learning_rate: float = Field(default=1.0e-6, gt=0)
    """Peak learning rate."""
    epochs: float = Field(default=1, gt=0)
    """Passes over the exported dataset."""
    global_batch_size: int = Field(default=64, ge=1)
    """Sequences per optimizer step across all processes."""
    micro_batch_size: int | None = Field(default=None, ge=1)
    """Per-device batch; default: the largest of 1, 2, 4, 8 dividing the per-process batch."""
    sequence_len: int = Field(default=4096, ge=16)
    """Maximum tokens per example."""
    warmup_ratio: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Share of steps spent warming the learning rate up."""
    lr_scheduler: str = "cosine"
    """Axolotl `lr_scheduler`."""
    sample_packing: bool | None = None
    """Pack short examples into full sequences; default on GPU, off on CPU."""
    launcher: Literal["python", "accelerate", "torchrun"] = "python"
    """How `axolotl train` starts its processes."""
    num_processes: int = Field(default=1, ge=1)
    """Training processes (GPUs) on this node."""
    axolotl: dict[str, Any] = Field(default_factory=dict)
    """Any other Axolotl key, passed through untouched (it wins over rendered values)."""


class EvalSpec(Strict):
    suites: list[str] = Field(default_factory=lambda: ["tiny"])
    """Suites from eval_suites/ to run on the base model and every trained variant."""
    limit: int | None = Field(default=None, ge=1)
    """Score only the first N items of each task (quick looks; never for published numbers)."""
    batch_size: int = Field(default=16, ge=1)
    """lm-eval batch size for the hf back-end."""


class Recipe(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.=,+-]*$")
    """Run name; outputs go to RUNS_DIR/<name>."""
    extends: str | None = None
    """Another recipe file this one starts from (resolved when loading; kept for the record)."""
    seed: int = 0
    """Seed for sampling, derangements and training."""
    seeds: list[int] | None = None
    """Train one model per seed and variant; default [seed]."""
    data: DataSpec
    """The prompts and their reference answers."""
    student: StudentSpec
    """The model being distilled into."""
    teacher: TeacherSpec
    """The model that answers, critiques and refines."""
    critique: CritiqueSpec = Field(default_factory=CritiqueSpec)
    """Critique prompt style and what the CGD input holds."""
    variants: list[Variant] = Field(default_factory=lambda: list(VARIANTS))
    """Which models to build and compare: base, sft, distilled_sft, cft, cgd."""
    train: TrainSpec = Field(default_factory=TrainSpec)
    """Axolotl training settings."""
    eval: EvalSpec = Field(default_factory=EvalSpec)
    """Benchmarks."""
    matrix: dict[str, list[Any]] | None = None
    """Dotted key -> list of values; the recipe expands to their cartesian product."""

    _source_path: str | None = PrivateAttr(default=None)

    @property
    def source_path(self) -> str | None:
        """The recipe file this was loaded from (relative data paths resolve against its folder)."""
        return self._source_path

    @model_validator(mode="after")
    def _cross_checks(self) -> Recipe:
        problems: list[tuple[str, str]] = []
        if self.student.tiny is not None and self.student.model != "tiny":
            problems.append(("student.tiny", "only valid with `student.model: tiny`"))
        if len(set(self.variants)) != len(self.variants):
            problems.append(("variants", "lists a variant twice"))
        if not self.variants:
            problems.append(("variants", "must name at least one variant"))
        if self.train.global_batch_size % self.train.num_processes:
            problems.append(("train.global_batch_size", "must be divisible by train.num_processes"))
        if self.seeds is not None and not self.seeds:
            problems.append(("seeds", "must not be empty"))
        if problems:
            raise CrossCheckError(problems)
        return self

    @property
    def train_seeds(self) -> list[int]:
        return self.seeds or [self.seed]
