"""Start a local OpenAI-compatible server for a stage (`vllm serve` or `transformers serve`), stop it after.

The server runs in its own process group on 127.0.0.1, its output goes to `server.log` in the stage folder, and
it is stopped (SIGTERM to the group, then SIGKILL) when the stage ends, fails or is interrupted; an atexit hook
and, on Linux, a parent-death signal cover the cases where no `finally` runs. vLLM pins its own torch and
transformers, so `command` may point into another environment.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.procs import stop_process_group

_LIVE: set[ServerLauncher] = set()


class ServerStartError(Exception):
    """The server exited or did not become healthy in time; `log_tail` holds the end of its output."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


@dataclass
class ServeSettings:
    """A plain copy of the recipe's ServeSpec (so this module does not depend on the recipe schema)."""

    flavor: str = "vllm"
    command: list[str] | None = None
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    port: int | None = None
    startup_timeout_s: float = 900.0

    @classmethod
    def from_spec(cls, spec: Any) -> ServeSettings:
        if spec is None:
            return cls()
        data = spec.model_dump() if hasattr(spec, "model_dump") else dict(spec)
        return cls(**data)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _set_parent_death_signal() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ServerLauncher:
    def __init__(self, model: str, settings: ServeSettings, *, log_path: Path | None = None) -> None:
        self.model = model
        self.settings = settings
        self.log_path = log_path
        self.port = settings.port or 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        s = self.settings
        default = ["vllm", "serve"] if s.flavor == "vllm" else ["transformers", "serve"]
        cmd = list(s.command or default)
        exe = shutil.which(cmd[0]) or (str(Path(sys.executable).parent / cmd[0])
                                       if (Path(sys.executable).parent / cmd[0]).exists() else None)
        if exe is None:
            extra = " (install vLLM in its own environment and point vllm.command at it)" if s.flavor == "vllm" else ""
            raise HarnessError(f"cannot start the {s.flavor} server: command '{cmd[0]}' not found{extra}")
        cmd[0] = exe
        cmd += [self.model, "--host", "127.0.0.1", "--port", str(self.port)]
        if s.flavor == "vllm":
            if s.tensor_parallel_size > 1:
                cmd += ["--tensor-parallel-size", str(s.tensor_parallel_size)]
            if s.data_parallel_size > 1:
                cmd += ["--data-parallel-size", str(s.data_parallel_size)]
        return cmd + list(s.extra_args)

    def start(self) -> str:
        """Start and wait until healthy; returns the base URL (without /v1)."""
        if self.proc is not None:
            return self.base_url
        if not self.port:
            self.port = free_port()
        cmd = self.command()
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
            self._log.write(f"$ {' '.join(cmd)}\n".encode())
            self._log.flush()
        env = {**os.environ, **self.settings.env}
        self.proc = subprocess.Popen(cmd, stdout=self._log or subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                     preexec_fn=_set_parent_death_signal if sys.platform == "linux" else None)
        _LIVE.add(self)
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self.base_url

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.settings.startup_timeout_s
        proc = self.proc
        while True:
            if self.proc is not proc or proc is None:
                raise ServerStartError(f"the {self.settings.flavor} server was stopped while starting")
            code = proc.poll()
            if code is not None:
                raise ServerStartError(f"the {self.settings.flavor} server exited with code {code} before it was "
                                       f"ready (log: {self.log_path})", self.log_tail())
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise ServerStartError(f"the {self.settings.flavor} server was not healthy after "
                                       f"{self.settings.startup_timeout_s:.0f}s (log: {self.log_path})",
                                       self.log_tail())
            time.sleep(0.25)

    def log_tail(self, chars: int = 3000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[-chars:].decode(errors="replace")

    def stop(self, grace_s: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        _LIVE.discard(self)
        if proc is not None:
            stop_process_group(proc, grace_s)
        if self._log is not None:
            self._log.close()
            self._log = None


@atexit.register
def _stop_all() -> None:
    for launcher in list(_LIVE):
        launcher.stop(grace_s=5.0)
