"""Run `axolotl train CONFIG --launcher ...` as a subprocess: stream its log to a file, report progress from
the HF Trainer's log dicts, resume from the newest checkpoint of an interrupted run, and explain failures."""

from __future__ import annotations

import ast
import collections
import contextlib
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.axolotl.config import read_config
from harness.procs import stop_process_group

LAUNCHERS = ("python", "accelerate", "torchrun")
TAIL_LINES = 60
_DICT_RE = re.compile(r"\{'[^{}]*\}")
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_BAR_RE = re.compile(r"(\d+)/(\d+) \[")


class TrainFailed(Exception):
    """`axolotl train` exited non-zero."""

    def __init__(self, message: str, *, returncode: int, log_tail: str, likely_cause: str,
                 log_path: Path) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.log_tail = log_tail
        self.likely_cause = likely_cause
        self.log_path = log_path


@dataclass
class TrainResult:
    output_dir: Path
    seconds: float
    steps: int
    final_loss: float | None
    resumed_from: Path | None


def axolotl_executable() -> str:
    """The `axolotl` script of the environment this interpreter runs in."""
    candidate = Path(sys.executable).parent / "axolotl"
    if candidate.exists():
        return str(candidate)
    raise FileNotFoundError(f"no `axolotl` executable next to {sys.executable}; "
                            "install axolotl in this environment")


@dataclass(frozen=True)
class Launch:
    """How `axolotl train` starts its processes on this machine (a recipe's `train.launcher`, resolved)."""

    kind: str = "python"
    num_processes: int = 1
    """Processes (GPUs) on each machine."""
    num_machines: int = 1
    machine_rank: int = 0
    main_process_ip: str | None = None
    main_process_port: int = 29500

    @classmethod
    def of(cls, launcher: Any, num_processes: int | None = None, **overrides: Any) -> Launch:
        """From a kind name (with `num_processes`), a recipe's LauncherSpec or a Launch; None overrides are
        ignored."""
        if isinstance(launcher, Launch):
            base = launcher
        elif isinstance(launcher, str):
            base = cls(kind=launcher, num_processes=num_processes or 1)
        else:
            base = cls(**{k: getattr(launcher, k) for k in cls.__dataclass_fields__})
        updates = {k: v for k, v in overrides.items() if v is not None}
        return replace(base, **updates) if updates else base

    @property
    def world_size(self) -> int:
        return self.num_processes * self.num_machines

    def check(self) -> None:
        if self.kind not in LAUNCHERS:
            raise ValueError(f"unknown launcher '{self.kind}'; available: {', '.join(LAUNCHERS)}")
        if self.kind == "python" and self.world_size != 1:
            raise ValueError(f"launcher 'python' runs one process, but num_processes is {self.num_processes}"
                             f"{f' on {self.num_machines} machines' if self.num_machines > 1 else ''}; "
                             "use launcher accelerate or torchrun")
        if self.num_machines > 1 and not self.main_process_ip:
            raise ValueError(f"{self.num_machines} machines need main_process_ip (the address of the rank-0 "
                             "machine)")
        if not 0 <= self.machine_rank < self.num_machines:
            raise ValueError(f"machine_rank {self.machine_rank} is not below num_machines {self.num_machines}")

    def launcher_args(self) -> list[str]:
        """What goes after `--` on the `axolotl train` command line (torchrun's or accelerate's own flags)."""
        if self.kind == "torchrun":
            if self.num_machines == 1:  # standalone: a free local port, so two runs on one node never collide
                return ["--standalone", "--nproc_per_node", str(self.num_processes)]
            # Static rendezvous: every node names the same master; Axolotl would add a random --rdzv_id per node
            # to an --rdzv_endpoint, so the nodes would never meet.
            return ["--nnodes", str(self.num_machines), "--node_rank", str(self.machine_rank),
                    "--nproc_per_node", str(self.num_processes), "--master_addr", str(self.main_process_ip),
                    "--master_port", str(self.main_process_port)]
        if self.kind == "accelerate":
            args = ["--num_processes", str(self.world_size)]  # accelerate counts processes over all machines
            if self.world_size > 1:
                args = ["--multi_gpu", *args]
            if self.num_machines > 1:
                args += ["--num_machines", str(self.num_machines), "--machine_rank", str(self.machine_rank),
                         "--main_process_ip", str(self.main_process_ip),
                         "--main_process_port", str(self.main_process_port)]
            return args
        return []


def build_command(config_path: Path, *, launcher: Any, num_processes: int | None = None,
                  resume_from: Path | None = None) -> list[str]:
    """The `axolotl train` command line; launcher arguments go after `--`.

    `launcher` is a kind name (python, accelerate, torchrun; with `num_processes`), a recipe's `train.launcher`
    block or a Launch (multi-machine: the command for its `machine_rank`)."""
    launch = Launch.of(launcher, num_processes)
    launch.check()
    cmd = [axolotl_executable(), "train", str(config_path), "--launcher", launch.kind]
    if resume_from is not None:
        cmd += ["--resume-from-checkpoint", str(resume_from)]
    extra = launch.launcher_args()
    return cmd + ["--", *extra] if extra else cmd


def _checkpoint_step(path: Path) -> int | None:
    match = _CHECKPOINT_RE.match(path.name)
    return int(match.group(1)) if match else None


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete `checkpoint-N` folder (one killed mid-save lacks trainer_state.json)."""
    if not output_dir.is_dir():
        return None
    done = [p for p in output_dir.iterdir()
            if p.is_dir() and _checkpoint_step(p) is not None and (p / "trainer_state.json").is_file()]
    return max(done, key=_checkpoint_step, default=None)


def _checkpoint_global_step(checkpoint: Path | None) -> int:
    if checkpoint is None:
        return 0
    with contextlib.suppress(OSError, ValueError):
        return int(json.loads((checkpoint / "trainer_state.json").read_text())["global_step"])
    return _checkpoint_step(checkpoint) or 0


def _number(value: Any) -> Any:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return float(value)
    return value


def parse_log_dicts(line: str) -> list[dict[str, Any]]:
    """The HF Trainer's log dicts in one line of output (values printed as strings become floats)."""
    found = []
    for match in _DICT_RE.finditer(line):
        try:
            obj = ast.literal_eval(match.group(0))
        except (ValueError, SyntaxError):
            continue
        if isinstance(obj, dict) and ("loss" in obj or "train_loss" in obj or "train_runtime" in obj):
            found.append({k: _number(v) for k, v in obj.items()})
    return found


def parse_progress(line: str) -> list[tuple[dict[str, Any], tuple[int, int] | None]]:
    """The log dicts in one line of output, each with the last (step, total) of the Trainer's progress bar drawn
    before it (tqdm redraws with carriage returns, so the bar and the dict share a line)."""
    found = []
    for match in _DICT_RE.finditer(line):
        entries = parse_log_dicts(match.group(0))
        if not entries:
            continue
        bars = _BAR_RE.findall(line[:match.start()])
        found.append((entries[0], (int(bars[-1][0]), int(bars[-1][1])) if bars else None))
    return found


_CAUSES: list[tuple[str, tuple[str, ...]]] = [
    ("out of memory", ("out of memory", "outofmemoryerror", "cuda error: out of memory", "memoryerror",
                       "cannot allocate memory")),
    ("multi-process rendezvous failed (check launcher.main_process_ip/port, the firewall, and that every machine "
     "started)", ("disttimeouterror", "distnetworkerror", "rendezvousconnectionerror", "rendezvous timeout",
                  "address already in use", "connection refused")),
    ("missing GPU/CUDA", ("torch not compiled with cuda", "no cuda gpus are available",
                          "cannot access accelerator", "found no nvidia driver", "cuda driver",
                          "doesn't support bf16/gpu", "cuda is not available", "nccl error")),
    ("config error (Axolotl rejected the config)", ("validationerror", "validation error",
                                                    "validation errors for")),
    ("missing package", ("modulenotfounderror", "no module named", "importerror", "is not installed",
                         "requires the package", "doesn't seem to be installed")),
]


def diagnose(log_tail: str, returncode: int | None = None) -> str:
    """A short guess at why a training run failed, from its log."""
    text = log_tail.lower()
    for cause, needles in _CAUSES:
        if any(n in text for n in needles):
            if cause == "missing package":
                match = re.search(r"no module named '([^']+)'", log_tail, re.IGNORECASE)
                return f"missing package ({match.group(1)})" if match else cause
            return cause
    if returncode in (-signal.SIGKILL, 137):
        return "killed (SIGKILL): probably out of memory"
    return "see the log"


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, a pre-exec hook asking the kernel to SIGTERM the child when this process dies (even by
    SIGKILL), so a killed harness leaves no training running that would race its own resume."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))

    return hook


def run_axolotl_train(config_path: Path, *, log_path: Path, launcher: Any, num_processes: int | None = None,
                      env: dict, on_progress: Callable[[dict], None] | None = None) -> TrainResult:
    """Train with `axolotl train`; resume from the newest checkpoint in the config's output_dir if any.

    The combined stdout/stderr goes to `log_path` (appended, one header line per attempt). `on_progress` gets
    each HF Trainer log dict (loss, learning_rate, epoch, tokens/..., ...) with `step` and `total_steps` (from
    the Trainer's progress bar; None until it shows) added. `launcher` is a kind name (with `num_processes`),
    a recipe's `train.launcher` block or a Launch. Raises TrainFailed on a non-zero exit.
    """
    config_path = Path(config_path)
    cfg = read_config(config_path)
    output_dir = Path(cfg.get("output_dir") or "./model-out")
    if not output_dir.is_absolute():
        output_dir = Path.cwd() / output_dir
    logging_steps = int(cfg.get("logging_steps") or 1)
    if cfg.get("resume_from_checkpoint"):
        resumed_from: Path | None = Path(cfg["resume_from_checkpoint"])
        cmd = build_command(config_path, launcher=launcher, num_processes=num_processes)
    else:
        resumed_from = latest_checkpoint(output_dir)
        cmd = build_command(config_path, launcher=launcher, num_processes=num_processes,
                            resume_from=resumed_from)
    start_step = _checkpoint_global_step(resumed_from)

    child_env = {str(k): str(v) for k, v in env.items()}
    child_env.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    child_env["PYTHONUNBUFFERED"] = "1"
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    step = start_step
    total_steps: int | None = None
    final_loss: float | None = None
    train_loss: float | None = None
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} $ {' '.join(cmd)}\n")
        if resumed_from is not None:
            log.write(f"=== resuming from {resumed_from} (step {start_step})\n")
        log.flush()
        # A session of its own: launchers fork workers, and the whole group is stopped on any error here.
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=child_env, start_new_session=True,
                                preexec_fn=_die_with_parent())
        stream = proc.stdout
        try:
            for raw in iter(stream.readline, b"") if stream is not None else ():
                line = raw.decode("utf-8", errors="replace")
                log.write(line)
                log.flush()
                for segment in line.rstrip("\n").split("\r"):
                    if segment.strip():
                        tail.append(segment)
                for entry, bar in parse_progress(line):
                    if bar is not None:
                        total_steps = bar[1]
                    if "loss" in entry:  # (the bar is redrawn on a timer: its step can lag; its total cannot)
                        step += logging_steps
                        final_loss = entry["loss"] if isinstance(entry["loss"], float) else final_loss
                    elif "train_loss" in entry and isinstance(entry["train_loss"], float):
                        train_loss = entry["train_loss"]
                    if on_progress is not None:
                        on_progress({**entry, "step": step, "total_steps": total_steps})
            returncode = proc.wait()
        except BaseException:
            stop_process_group(proc)
            raise
        finally:
            if stream is not None:
                stream.close()
    seconds = time.monotonic() - started
    if returncode != 0:
        log_tail = "\n".join(tail)
        cause = diagnose(log_tail, returncode)
        raise TrainFailed(f"axolotl train exited with code {returncode} (log: {log_path})",
                          returncode=returncode, log_tail=log_tail, likely_cause=cause, log_path=log_path)
    steps = max(step, _checkpoint_global_step(latest_checkpoint(output_dir)))
    return TrainResult(output_dir=output_dir, seconds=seconds, steps=steps,
                       final_loss=final_loss if final_loss is not None else train_loss,
                       resumed_from=resumed_from)
