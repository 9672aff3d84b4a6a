"""The eval side of the model server: one OpenAI-compatible server per model serves all its generative tasks.

HOOK (owned by the generation back-end, harness/llm/server.py): `launch_server` uses the same launcher as the
generation stages (`ServerLauncher`: `vllm serve` or `transformers serve` on 127.0.0.1, stopped when the block
ends). If that launcher's interface changes, this is the one function to adapt. Everything else in the eval code
only needs a base URL, which is also how an already-running server is used (EvalBackend(kind="served")).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.errors import HarnessError


@contextlib.contextmanager
def launch_server(model_path: str, log_path: Path | None = None, *,
                  settings: dict[str, Any] | None = None) -> Iterator[str]:
    """Start a server for `model_path`, yield its base URL (without /v1), stop it afterwards."""
    try:
        from harness.llm.server import ServerLauncher, ServerStartError, ServeSettings
    except ImportError as exc:  # pragma: no cover - the launcher ships with the harness
        raise HarnessError(f"eval back-end `vllm` needs the server launcher (harness.llm.server): {exc}") from exc
    import dataclasses

    known = {f.name for f in dataclasses.fields(ServeSettings)}
    serve = ServeSettings(**{k: v for k, v in (settings or {}).items() if k in known})
    launcher = ServerLauncher(model_path, serve, log_path=log_path)
    try:
        url = launcher.start()
    except ServerStartError as exc:
        tail = f"\n{exc.log_tail}" if getattr(exc, "log_tail", "") else ""
        raise HarnessError(f"could not start the model server for evaluation: {exc}{tail}") from exc
    try:
        yield url
    finally:
        launcher.stop()
