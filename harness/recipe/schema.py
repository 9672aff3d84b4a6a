"""The typed recipe: every key a YAML recipe may hold, with a docstring per field.

Unknown keys are rejected (`extra="forbid"`). Single-field checks live on the fields; cross-field checks live in
`Recipe._cross_checks` so there is one place to read them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from harness.variants import BUILT_IN as VARIANTS
from harness.variants import variant_names

Specificity = Literal["specific", "irrelevant", "generic", "none"]


def _check_analysis(entry: str | dict[str, Any]) -> str | dict[str, Any]:
    from harness.analysis import check_entry  # the analysis registry imports this module (Strict)

    return check_entry(entry)


class AnalysisEntry:
    """One `analysis:` entry: a registered analysis's name, or {name: ..., <its settings>} (validated as such)."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(_check_analysis, handler(str | dict[str, Any]))


class CrossCheckError(ValueError):
    """Problems that involve several fields, each as (dotted path, message), so the loader can locate each one."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path}: {msg}" for path, msg in problems))
        self.problems = problems


class Strict(BaseModel):
    """Base for every recipe block: unknown keys are errors, field docstrings are descriptions."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


class DataSpec(Strict):
    source: Literal["jsonl", "json", "parquet", "csv", "hf"] = "jsonl"
    """Where prompts come from. `jsonl`, `json`, `parquet`, `csv`: a local file; `hf`: whatever
    `datasets.load_dataset(path, name, split=, revision=, data_files=, streaming=)` reads (a hub id, offline from
    the `datasets` cache when HF_DATASETS_OFFLINE=1; a local dataset folder; or a builder such as `parquet` with
    `data_files`)."""
    path: str
    """Path of the data file (relative to the working folder, the recipe's folder or the project root, or
    absolute); for `source: hf` the dataset id or folder."""
    name: str | None = None
    """`source: hf`: the dataset's config (subset) name, e.g. `WebInstruct-CFT-50K`."""
    split: str = "train"
    """`source: hf`: the split to read (e.g. `additional_problems` for nvidia/OpenMathReasoning)."""
    revision: str | None = None
    """`source: hf`: a commit, tag or branch of the dataset repository; part of the data stage's fingerprint."""
    data_files: str | list[str] | dict[str, str | list[str]] | None = None
    """`source: hf`: files for the builder (local paths are fingerprinted by content)."""
    streaming: bool = False
    """`source: hf`: iterate without downloading everything first (then no dataset fingerprint before reading)."""
    processor: str | None = None
    """A known dataset's processor (maps a source row to prompt, reference, id; replaces prompt_field and
    answer_field): webinstruct_sub, webinstruct_filter, webinstruct_cft, openmathreasoning, nemotron_sft_math,
    metamathqa, openmathinstruct2, numinamath."""
    shuffle: int | None = None
    """Shuffle the rows with this seed before `limit` takes the first N (null: keep the source's order)."""
    filter: dict[str, Any] | None = None
    """Keep only rows whose source fields equal these values (a list value: one of them), e.g.
    `{problem_source: [math, gsm8k]}`; applied before the processor."""
    prompt_field: str = "question"
    """Column holding the prompt x."""
    answer_field: str = "answer"
    """Column holding the dataset's own answer (used by SFT and for verification)."""
    id_field: str | None = None
    """Column with a stable row id; when absent the id is a hash of the row."""
    limit: int | None = Field(default=None, ge=1)
    """Use only the first N rows (after dropping rows without a prompt)."""
    decontaminate: Literal["report", "drop"] = "report"
    """Training prompts are checked against the problems of every benchmark in eval.suites (normalized n-gram
    overlap and exact match) before any request is sent. `report`: count and list the hits (manifest, `cgd plan`,
    the report); `drop`: also remove them, and exact duplicates after normalization, before the student or the
    teacher sees them."""
    decontaminate_ngram: int = Field(default=13, ge=3, le=64)
    """Length in words of the n-grams the decontamination compares (13, as in the literature); a benchmark problem
    shorter than this counts as a hit when a prompt contains it whole."""

    @model_validator(mode="after")
    def _known_processor(self) -> DataSpec:
        from harness.data.processors import available

        problems = []
        if self.processor is not None and self.processor not in available():
            problems.append(("data.processor", f"unknown processor '{self.processor}'; available: "
                                               f"{', '.join(available())}"))
        hf_only = [k for k in ("name", "revision", "data_files") if getattr(self, k) is not None]
        if self.streaming:
            hf_only.append("streaming")
        problems += [(f"data.{k}", f"only valid with `source: hf` (source is {self.source})")
                     for k in hf_only if self.source != "hf"]
        if problems:
            raise CrossCheckError(problems)
        return self


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


class ServeSpec(Strict):
    """How the harness starts a local OpenAI-compatible server (back-end `vllm`) and stops it when the stage ends.

    vLLM pins its own torch and transformers, so it usually lives in its own environment: point `command` at it
    (for example `[/opt/vllm-env/bin/vllm, serve]`). `flavor: transformers` starts `transformers serve` instead,
    a real OpenAI-compatible server that runs on CPU (tests and small models)."""

    flavor: Literal["vllm", "transformers"] = "vllm"
    """Which server and argument dialect: `vllm serve` or `transformers serve`."""
    command: list[str] | None = None
    """The command before the model name; default `[vllm, serve]` or `[transformers, serve]` from PATH."""
    tensor_parallel_size: int = Field(default=1, ge=1)
    """GPUs one model replica is split across (vLLM `--tensor-parallel-size`)."""
    data_parallel_size: int = Field(default=1, ge=1)
    """Model replicas serving in parallel (vLLM `--data-parallel-size`)."""
    extra_args: list[str] = Field(default_factory=list)
    """More command-line arguments, appended as given (e.g. `[--max-model-len, "8192"]`)."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment variables for the server process (e.g. `CUDA_VISIBLE_DEVICES`)."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """Port on 127.0.0.1; default: a free one."""
    startup_timeout_s: float = Field(default=900.0, gt=0)
    """How long to wait for the server's health check before failing the stage."""


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
    """Retries for transient failures (429, 5xx, timeouts, dropped connections, malformed bodies)."""
    retry_backoff_s: float = Field(default=1.0, gt=0)
    """First retry delay; it doubles per retry (with jitter). A server's retry-after wins over it."""
    retry_max_backoff_s: float = Field(default=60.0, gt=0)
    """Cap on one retry delay computed by backoff."""
    vllm: ServeSpec | None = None
    """Server launch settings for back-end `vllm` (the model is served on 127.0.0.1 for the stage's duration)."""


class TinyStudentSpec(Strict):
    """Settings of the locally built tiny student (only with `student.model: tiny`)."""

    warmup_steps: int = Field(default=1200, ge=0)
    """Plain-torch warm-up steps on reference solutions, so drafts are sometimes right and often wrong."""
    hidden_size: int = Field(default=128, ge=32)
    """Model width."""
    num_layers: int = Field(default=4, ge=1)
    """Decoder layers."""


def _check_parser(path: str, name: str) -> None:
    """A parser name the registry (harness/parsers/) holds, else the problem at `path`."""
    from harness.parsers import PARSERS

    if name not in PARSERS:
        raise CrossCheckError([(path, f"unknown parser '{name}'; available: {', '.join(PARSERS.names())}")])


class StudentSpec(ConnectionSpec):
    model: str
    """`tiny` (built locally), a local model folder, or a model name the back-end knows."""
    backend: str = "hf"
    """Generation back-end for drafts: hf, openai_compat, vllm, ... (registered in harness/llm/)."""
    batch_size: int = Field(default=32, ge=1)
    """Prompts per batched `generate` call (hf back-end)."""
    generation: GenerationSpec = Field(default_factory=lambda: GenerationSpec(temperature=0.0, max_tokens=256))
    """How drafts are sampled."""
    tiny: TinyStudentSpec | None = None
    """Tiny-world student settings; only valid with `model: tiny`."""
    max_failed: float = Field(default=0, ge=0)
    """Failed (or unsent) records a probe stage may end with and still count as done: below 1 a share of the
    stage's records (0.01 = 1%), 1 or more a count. Above it the stage is partial: exit 1, nothing downstream
    runs, and the next `cgd run` sends only the failed and missing requests."""
    parser: str = "none"
    """Output parser for the student's drafts (harness/parsers/, one module per model family): `none` (the text as
    generated), `s1` (S1.1: what follows the `answer\\s+Answer` marker), `harmony` (gpt-oss: the final channel),
    `think` (drops `<think>...</think>` blocks). The raw text is kept as `draft_raw` when the parser changed it;
    a parser other than `none` is part of the probe's fingerprint."""

    @model_validator(mode="after")
    def _known_parser(self) -> StudentSpec:
        _check_parser("student.parser", self.parser)
        return self


class TeacherSpec(ConnectionSpec):
    provider: str
    """Teacher back-end: oracle, openai, anthropic, openai_compat, vllm, hf (registered in harness/llm/)."""
    model: str
    """Model name sent to the provider."""
    generation: GenerationSpec = Field(default_factory=lambda: GenerationSpec(temperature=0.0, max_tokens=512))
    """How critiques, refinements and answers are sampled."""
    budget_usd: float | None = Field(default=None, gt=0)
    """Stop a teacher stage cleanly before its spend would pass this many dollars: spend so far plus the worst
    case of the requests in flight never passes it; finished work is kept."""
    price: dict[str, float] | None = None
    """Override of the price table, USD per million tokens: keys input, output, cached_input, cache_write
    (input tokens written to a prompt cache), and batch_discount (multiplier for batch requests, e.g. 0.5)."""
    batch: bool = False
    """Send teacher requests through the provider's batch API (openai, anthropic): half price, answers within
    24 h. Batch ids are recorded in the request cache, so a restarted run collects a batch instead of paying
    for it twice."""
    batch_poll_s: float = Field(default=30.0, gt=0)
    """Seconds between polls of a submitted batch."""
    batch_max_requests: int = Field(default=10000, ge=1)
    """Requests per submitted batch (providers cap a batch's size)."""
    max_malformed_retries: int = Field(default=2, ge=0)
    """Re-asks of a teacher answer that is unusable (no verdict line, empty, cut off at max_tokens) before the
    record is marked failed with the reason (only with `reask: true`)."""
    reask: bool = True
    """Re-ask unusable teacher answers (up to `max_malformed_retries` times, sampled at temperature >= 0.7) and
    drop the record when they stay unusable. `false` keeps every output as generated, as the official CGD code
    does (src/cgd_pipeline.py): a critique without a verdict line gets verdict None (counted `no_verdict` in the
    stage info), a cut-off or empty answer is kept (counted `cut_off`, `empty`). Off in the paper recipes; part
    of the teacher stages' fingerprint when off."""
    parser: str = "none"
    """Output parser for the teacher's critiques, refinements and answers (harness/parsers/): `none`, `s1`,
    `harmony`, `think`; see `student.parser`. The raw text is kept as `critique_raw`, `refined_raw`,
    `teacher_answer_raw` when the parser changed it; the verdict and the grade are read from the parsed text. A
    parser other than `none` is part of the teacher stages' fingerprint."""
    max_failed: float = Field(default=0, ge=0)
    """Failed (or unsent) records a teacher stage may end with and still count as done: below 1 a share of the
    stage's records (0.01 = 1%), 1 or more a count. Above it the stage is partial: exit 1, nothing downstream
    runs, and the next `cgd run` sends only the failed and missing requests."""

    @model_validator(mode="after")
    def _known_parser(self) -> TeacherSpec:
        _check_parser("teacher.parser", self.parser)
        return self


class CritiqueMixSpec(Strict):
    """Shares of right and wrong critiques (by the teacher's verdict) in the CGD dataset, like the paper's
    filter_crit_ratios.py: every mix has min(|right|, |wrong|) examples, so every member of a matrix over the mix
    trains on the same number of examples. Give one share (the other is the rest) or both (summing to 1)."""

    right: float | None = Field(default=None, ge=0.0, le=1.0)
    """Share of examples whose critique concluded the draft was right."""
    wrong: float | None = Field(default=None, ge=0.0, le=1.0)
    """Share of examples whose critique concluded the draft was wrong."""

    @property
    def shares(self) -> tuple[float, float]:
        """(right, wrong), the missing one filled in."""
        right = self.right if self.right is not None else 1.0 - (self.wrong or 0.0)
        wrong = self.wrong if self.wrong is not None else 1.0 - right
        return right, wrong


class CritiqueNoiseSpec(Strict):
    """Corrupt a seeded share of the critiques the CGD dataset shows (the noise ablation); targets are untouched."""

    rate: float = Field(ge=0, le=1)
    """Share of the CGD examples whose critique is corrupted (rounded to a whole number of examples)."""
    kind: Literal["flip_verdict", "wrong_step", "shuffle"]
    """flip_verdict: the `Conclusion: right|wrong` line says the opposite; wrong_step: one number in the critique
    is changed, so it points at a step that is not the student's; shuffle: the critique's sentences in a seeded
    random order."""


class SelfRefineSpec(Strict):
    verify: bool = False
    """Keep only the student's own refinements that the grader accepts (the self-refine baseline's filter)."""


class CritiqueSpec(Strict):
    style: str = "paper"
    """Prompt style from prompts/ (critique, refine and training-input templates)."""
    specificity: Specificity = "specific"
    """Critique put in the CGD input: the real one, one of another problem, boilerplate, or none."""
    keep_unverified: Literal["keep", "drop", "count"] = "keep"
    """Refinements whose answer fails the grader: keep them, drop them from training, or keep and only count."""
    mix: CritiqueMixSpec | None = None
    """Right/wrong critique shares of the CGD dataset, e.g. `{right: 0.25, wrong: 0.75}`: a seeded sample of
    min(|right|, |wrong|) examples (records without a verdict are left out). A matrix varies it with
    `critique.mix.right: [1.0, 0.75, 0.5, 0.25, 0.0]`. Unset: every record, whatever its verdict."""
    noise: CritiqueNoiseSpec | None = None
    """Corrupt a seeded share of the CGD dataset's critiques, e.g. `{rate: 0.3, kind: flip_verdict}`; a matrix
    over `critique.noise.rate` is the noise ablation. Unset: critiques as the teacher wrote them."""


DEEPSPEED_PRESETS = ("zero1", "zero2", "zero3", "zero3_offload")
"""DeepSpeed configs shipped in harness/axolotl/deepspeed/ (Axolotl's wheel ships none)."""


class LauncherSpec(Strict):
    """How `axolotl train` starts its processes. A bare string (`launcher: torchrun`) sets only `kind`."""

    kind: Literal["python", "accelerate", "torchrun"] = "python"
    """`python`: one process in `axolotl train --launcher python` (the CPU, or one GPU); `torchrun` or
    `accelerate`: one process per GPU."""
    num_processes: int = Field(default=1, ge=1)
    """Processes (GPUs) per machine."""
    num_machines: int = Field(default=1, ge=1)
    """Machines (nodes) in the job, each running num_processes; more than one: `cgd train --emit-slurm`, or
    `cgd train --node-rank R` on every machine."""
    machine_rank: int = Field(default=0, ge=0)
    """This machine's rank, 0 on the main machine (Slurm scripts pass SLURM_NODEID instead)."""
    main_process_ip: str | None = None
    """Address of the rank-0 machine, where the processes meet (Slurm scripts use the job's first node)."""
    main_process_port: int = Field(default=29500, ge=1, le=65535)
    """Rendezvous port on the rank-0 machine."""

    @model_validator(mode="before")
    @classmethod
    def _kind_shorthand(cls, data: Any) -> Any:
        return {"kind": data} if isinstance(data, str) else data


class FSDPSpec(Strict):
    """PyTorch FSDP2 sharding, rendered as Axolotl's `fsdp_version: 2` plus `fsdp_config:`; more keys can go in
    `train.axolotl.fsdp_config`."""

    offload_params: bool = False
    """Keep sharded parameters and gradients in CPU memory between uses: slower, fits bigger models."""
    activation_checkpointing: bool = True
    """Recompute activations in the backward pass (FSDP's own, instead of gradient_checkpointing)."""
    auto_wrap_policy: Literal["TRANSFORMER_BASED_WRAP", "SIZE_BASED_WRAP"] = "TRANSFORMER_BASED_WRAP"
    """How the model is cut into shards: per decoder layer, or by parameter count."""
    transformer_layer_cls_to_wrap: str | None = None
    """Decoder layer class to shard by (e.g. Qwen2DecoderLayer, LlamaDecoderLayer); default: the model's own
    `_no_split_modules`."""
    state_dict_type: Literal["FULL_STATE_DICT", "SHARDED_STATE_DICT"] = "FULL_STATE_DICT"
    """How checkpoints are written while training; the final model is always a full Hugging Face folder."""
    reshard_after_forward: bool = True
    """Free gathered parameters after each layer's forward (ZeRO-3-like); false keeps them (ZeRO-2-like: more
    memory, less communication)."""
    cpu_ram_efficient_loading: bool = True
    """Load the weights on rank 0 only and broadcast them (saves host memory with big models)."""


class CheckpointSelectionSpec(Strict):
    """Keep the best checkpoint as scored on prompts held out from training (never on a test benchmark)."""

    holdout: int = Field(default=32, ge=1)
    """Prompts with a reference answer held out from every variant's training rows: chosen by a hash of their
    id, so the same prompts for every variant and seed."""
    every_steps: int | None = Field(default=None, ge=1)
    """Save (and later score) a checkpoint every N optimizer steps; default: 4 per run. All are kept until
    scored; their optimizer states are deleted once the stage is done."""
    metric: Literal["auto", "accuracy", "loss"] = "auto"
    """Score of a checkpoint. accuracy: the share of held-out prompts whose greedy answer (the student's chat
    template, the plain prompt) matches the reference answer (math-like answers only; `cgd validate` refuses it on
    free-text answers); loss: the mean token loss of the held-out rows' own training targets (any data); auto:
    accuracy when the held-out references are gradable, else loss. An accuracy tie on every checkpoint is broken
    by the loss (the stage info says so)."""
    max_tokens: int = Field(default=512, ge=1)
    """Generation cap per held-out prompt."""
    batch_size: int = Field(default=16, ge=1)
    """Held-out prompts per generate call."""


class TrainSpec(Strict):
    method: Literal["full", "lora"] = "full"
    """Full fine-tune or LoRA (the LoRA adapter is merged into a plain Hugging Face model after training)."""
    learning_rate: float = Field(default=1.0e-6, gt=0)
    """Peak learning rate."""
    epochs: float = Field(default=1, gt=0)
    """Passes over the exported dataset."""
    global_batch_size: int = Field(default=64, ge=1)
    """Sequences per optimizer step across all processes: micro_batch_size x gradient accumulation x
    launcher.num_processes x launcher.num_machines."""
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
    launcher: LauncherSpec = Field(default_factory=LauncherSpec)
    """How `axolotl train` starts its processes: kind (python, accelerate, torchrun), processes per machine,
    machines, and the rendezvous of a multi-machine job."""
    num_processes: int | None = Field(default=None, ge=1)
    """Same as launcher.num_processes (kept for older recipes)."""
    deepspeed: str | None = None
    """DeepSpeed: a shipped preset (zero1, zero2, zero3, zero3_offload) or the path of a DeepSpeed JSON
    (relative to the recipe's folder). GPU only: runs without a GPU leave it out."""
    fsdp: FSDPSpec | None = None
    """PyTorch FSDP2 instead of DeepSpeed (`fsdp: {}` takes the defaults). GPU only."""
    select_checkpoint: CheckpointSelectionSpec | None = None
    """Score checkpoints on held-out prompts and keep the best (off: keep the final model)."""
    format: Literal["chat", "llamafactory_alpaca"] = "chat"
    """How the exported rows are laid out (harness/formats/): `chat`, the variant's messages as built (the
    instruction in the system turn); `llamafactory_alpaca`, LLaMA-Factory's Alpaca conversion as the paper trained
    (instruction + "\\n" + input in one user turn, the template's default system prompt in the system turn; needs
    chat_template)."""
    chat_template: Literal["qwen", "llama3"] | None = None
    """The chat template rows are trained with: LLaMA-Factory's `qwen` or `llama3` (its end-of-turn token becomes
    the tokenizer's EOS, as LLaMA-Factory does); default: the student tokenizer's own."""
    overlong: Literal["drop", "truncate"] = "drop"
    """Rows longer than sequence_len tokens: `drop` them (Axolotl's default) or `truncate` them to sequence_len
    (Axolotl keeps the first sequence_len tokens; LLaMA-Factory's cutoff_len also truncates, splitting the budget
    between prompt and target). The export counts them either way (info `overlong`, shown in the report)."""
    axolotl: dict[str, Any] = Field(default_factory=dict)
    """Any other Axolotl key, passed through untouched (it wins over rendered values)."""

    @model_validator(mode="after")
    def _legacy_num_processes(self) -> TrainSpec:
        if self.num_processes is not None and "num_processes" not in self.launcher.model_fields_set:
            self.launcher.num_processes = self.num_processes
        return self

    @model_validator(mode="after")
    def _format_needs_template(self) -> TrainSpec:
        if self.format == "llamafactory_alpaca" and self.chat_template is None:
            raise ValueError("train.format llamafactory_alpaca needs train.chat_template (qwen or llama3): the "
                             "system turn is that template's default system prompt")
        return self

    @property
    def world_size(self) -> int:
        """Training processes across all machines."""
        return self.launcher.num_processes * self.launcher.num_machines


class EvalSpec(Strict):
    suites: list[str] = Field(default_factory=lambda: ["tiny"])
    """Suites from eval_suites/ to run on the base model and every trained variant."""
    limit: int | None = Field(default=None, ge=1)
    """Score only the first N items of each task (quick looks; never for published numbers)."""
    batch_size: int = Field(default=16, ge=1)
    """lm-eval batch size for the hf back-end."""
    max_gen_toks: int | None = Field(default=None, ge=1)
    """Generation cap for generative tasks, overriding the suites' (the paper: 8192 for Llama, 16384 for Qwen)."""
    add_tasks: dict[str, list[str | dict[str, Any]]] = Field(default_factory=dict)
    """Extra lm-eval tasks per suite name (task names or full task configs); part of that suite's hash."""
    backend: Literal["hf", "vllm", "served"] | None = None
    """How models are scored: in-process transformers, a vLLM server the harness starts, or an already running
    OpenAI-compatible server at eval.base_url. Default: vllm when the student is served by vLLM, else hf."""
    base_url: str | None = None
    """Endpoint of the running server for `backend: served`."""
    loglikelihood: Literal["auto", "completions", "vllm", "hf"] | None = None
    """Where multiple-choice (log-likelihood) tasks run when generation is served; auto picks what is available."""
    grader: Literal["math_verify", "paper"] = "math_verify"
    """How the math tasks decide that an answer equals the gold (harness.graders): `math_verify` (math-verify's
    equivalence), or `paper`, the CGD paper's official `math_equal` (rounding to one decimal, relative tolerance
    1e-4, percent forms x100 and /100, sympy equality; data/grader_disagreements.jsonl lists where they differ).
    Part of those suites' hash; the report names each column's grader."""
    template: Literal["llama3-math-cot", "qwen25-math-cot"] | None = None
    """The maths suites' prompt (math, math_passk): null sends each question through the student's chat template
    with the suite's system instruction; a name sends the CGD paper's hand-written prompt instead, with its nine
    stop words (eval/evaluate_math/utils.py PROMPT_TEMPLATES and math_eval.py; eval_suites/chat_templates/
    official_prompts.yaml). `llama3-math-cot` has one "\\n" after each header and no date block. Part of those
    suites' hash only when set."""


class WandbTrackingSpec(Strict):
    """Weights & Biases: one run per recipe (a matrix member's run is named after it, grouped by the base name)."""

    project: str
    """W&B project the runs go to."""
    entity: str | None = None
    """W&B team or user; default: the logged-in user's default entity."""
    mode: Literal["online", "offline", "disabled"] | None = None
    """`online`, `offline` (written under WANDB_DIR, `wandb sync` later) or `disabled`; default: WANDB_MODE if
    set, else `online`. The API key comes only from the environment (WANDB_API_KEY or `wandb login`)."""


class MlflowTrackingSpec(Strict):
    """MLflow: one run per recipe in one experiment; a matrix's members are children of a run named after the
    base name."""

    tracking_uri: str | None = None
    """Where runs are stored: a server URL, `file:/path/mlruns` or a database URI; default: MLFLOW_TRACKING_URI
    if set, else `file:RUNS_DIR/mlruns`."""
    experiment: str | None = None
    """Experiment name; default: the recipe's (base) name."""


class TrackingSpec(Strict):
    """Experiment tracking (optional extra `tracking`). Never part of a stage's fingerprint: turning it on or off
    re-runs nothing, and every stage of a run is logged, cached ones too."""

    wandb: WandbTrackingSpec | None = None
    """Log to Weights & Biases."""
    mlflow: MlflowTrackingSpec | None = None
    """Log to MLflow."""
    training_curves: bool = True
    """Also have Axolotl log each training's loss curve to the same trackers (its own integration), as a run
    named `<recipe>/train:<variant>:<seed>`."""


PRICE_KEYS = frozenset({"input", "output", "cached_input", "cache_write", "batch_discount"})


def _connection_checks(where: str, spec: ConnectionSpec, backend: str) -> list[tuple[str, str]]:
    problems = []
    if spec.vllm is not None and backend != "vllm":
        problems.append((f"{where}.vllm", f"only used with back-end `vllm` (this one is `{backend}`)"))
    if backend == "vllm" and spec.base_url:
        problems.append((f"{where}.base_url", "back-end `vllm` starts its own server; to use a running one, "
                                              "choose `openai_compat` with this base_url"))
    serve = spec.vllm
    if serve is not None and serve.flavor == "transformers" and (serve.tensor_parallel_size > 1
                                                                 or serve.data_parallel_size > 1):
        problems.append((f"{where}.vllm", "transformers serve has no tensor or data parallelism"))
    if spec.retry_max_backoff_s < spec.retry_backoff_s:
        problems.append((f"{where}.retry_max_backoff_s", "must be at least retry_backoff_s"))
    return problems


def _mix_checks(recipe: Recipe) -> list[tuple[str, str]]:
    mix = recipe.critique.mix
    if mix is None:
        return []
    problems = []
    if mix.right is None and mix.wrong is None:
        problems.append(("critique.mix", "give the share of right critiques, of wrong ones, or both"))
    elif mix.right is not None and mix.wrong is not None and abs(mix.right + mix.wrong - 1.0) > 1e-6:
        problems.append(("critique.mix", f"right + wrong must be 1 (got {mix.right} + {mix.wrong} = "
                                         f"{mix.right + mix.wrong:g})"))
    if "cgd" not in recipe.variants:
        problems.append(("critique.mix", "sets the CGD dataset's right/wrong shares, but variants has no cgd"))
    return problems


def _train_checks(recipe: Recipe) -> list[tuple[str, str]]:
    t, launch = recipe.train, recipe.train.launcher
    problems = []
    if t.num_processes is not None and t.num_processes != launch.num_processes:
        problems.append(("train.num_processes", f"says {t.num_processes} but train.launcher.num_processes says "
                                                f"{launch.num_processes}; keep one"))
    world = t.world_size
    if t.global_batch_size % world:
        problems.append(("train.global_batch_size", f"must be divisible by the number of training processes "
                                                    f"({world} = launcher.num_processes x launcher.num_machines)"))
    elif t.micro_batch_size and (t.global_batch_size // world) % t.micro_batch_size:
        problems.append(("train.micro_batch_size", f"must divide the per-process batch ({t.global_batch_size} / "
                                                   f"{world} processes = {t.global_batch_size // world})"))
    if launch.kind == "python" and world > 1:
        where = "train.num_processes" if t.num_processes is not None else "train.launcher.kind"
        problems.append((where, f"launcher `python` runs one process, but {world} are asked for; use torchrun "
                                "or accelerate"))
    if launch.machine_rank >= launch.num_machines:
        problems.append(("train.launcher.machine_rank", f"must be below num_machines ({launch.num_machines})"))
    if t.deepspeed is not None and t.fsdp is not None:
        problems.append(("train.fsdp", "DeepSpeed and FSDP cannot be combined; keep one of train.deepspeed and "
                                       "train.fsdp"))
    if t.deepspeed is not None and t.deepspeed not in DEEPSPEED_PRESETS and not t.deepspeed.endswith(".json"):
        problems.append(("train.deepspeed", f"unknown DeepSpeed preset '{t.deepspeed}'; available: "
                                            f"{', '.join(DEEPSPEED_PRESETS)}, or the path of a .json file"))
    select = t.select_checkpoint
    if select is not None and t.fsdp is not None and t.fsdp.state_dict_type == "SHARDED_STATE_DICT":
        problems.append(("train.fsdp.state_dict_type", "sharded checkpoints cannot be scored by "
                                                       "train.select_checkpoint; use FULL_STATE_DICT"))
    if select is not None and recipe.data.limit is not None and select.holdout >= recipe.data.limit:
        problems.append(("train.select_checkpoint.holdout", f"holds out {select.holdout} of data.limit "
                                                            f"{recipe.data.limit} prompts: nothing left to train on"))
    return problems


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
    variants: list[str] = Field(default_factory=lambda: list(VARIANTS))
    """Which models to build and compare: base, sft, distilled_sft, cft, cgd, or any variant registered in
    harness/variants/ (one module per method) or by a $CGD_PLUGINS module."""
    train: TrainSpec = Field(default_factory=TrainSpec)
    """Axolotl training settings."""
    eval: EvalSpec = Field(default_factory=EvalSpec)
    """Benchmarks."""
    matrix: dict[str, list[Any]] | None = None
    """Dotted key -> list of values; the recipe expands to their cartesian product."""
    self_refine: SelfRefineSpec = Field(default_factory=SelfRefineSpec)
    """Settings of the self_refine variant (the student critiques and refines its own draft, no teacher)."""
    budget_usd: float | None = Field(default=None, gt=0)
    """The recipe's teacher budget in dollars: every teacher stage (critique, refine, answer) together, counting
    what earlier runs already spent in them. A stage stops cleanly (partial, finished work kept) when its spend
    would pass what is left; `teacher.budget_usd` can still cap each stage on its own."""
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    """W&B / MLflow tracking of every stage's counts, cost and failures, the training curves, every evaluation
    row and the final table; not part of any fingerprint."""

    analysis: list[AnalysisEntry] = Field(default_factory=list)
    """Analyses to run as cached stages after evaluate (harness/analysis/, one module per analysis): each entry a
    name (`format`) or a name with settings (`{name: verdicts, grader: paper}`). Built-ins: format (answer form and
    critique language of the evaluated models' generations, drift vs base), leakage (critiques that state the
    reference answer), verdicts (the teacher's verdicts against the grader), uncertainty (the student's NLL and
    entropy of the refined answer). Their tables are in the reports' Analysis section and run.json."""

    _source_path: str | None = PrivateAttr(default=None)
    _locator: Any = PrivateAttr(default=None)  # where each value came from (harness.recipe.loader.locator_of)

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
        known = variant_names()
        problems += [("variants", f"unknown variant '{v}'; available: {', '.join(known)}")
                     for v in self.variants if v not in known]
        if not self.variants:
            problems.append(("variants", "must name at least one variant"))
        problems += _train_checks(self)
        if self.seeds is not None and not self.seeds:
            problems.append(("seeds", "must not be empty"))
        problems += _mix_checks(self)
        problems += _connection_checks("teacher", self.teacher, self.teacher.provider)
        problems += _connection_checks("student", self.student, self.student.backend)
        if self.eval.backend == "served" and not self.eval.base_url:
            problems.append(("eval.backend", "`served` scores through a running server: set eval.base_url"))
        if self.eval.base_url and self.eval.backend != "served":
            problems.append(("eval.base_url", "only used with eval.backend: served"))
        for suite in self.eval.add_tasks:
            if suite not in self.eval.suites:
                problems.append((f"eval.add_tasks.{suite}", f"suite '{suite}' is not in eval.suites"))
        if self.teacher.price:
            unknown = sorted(set(self.teacher.price) - PRICE_KEYS)
            if unknown:
                problems.append(("teacher.price", f"unknown price key(s) {', '.join(unknown)}; "
                                                  f"known: {', '.join(sorted(PRICE_KEYS))}"))
            missing = sorted({"input", "output"} - set(self.teacher.price))
            if missing:
                problems.append(("teacher.price", f"needs {' and '.join(missing)} (USD per million tokens)"))
        if self.analysis:
            from harness.analysis import duplicate_problems

            problems += duplicate_problems(self.analysis)
        if problems:
            raise CrossCheckError(problems)
        return self

    @property
    def train_seeds(self) -> list[int]:
        return self.seeds or [self.seed]
