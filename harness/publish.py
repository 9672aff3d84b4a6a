"""`cgd publish RUN [--to ORG/NAME] [--private] [--only datasets|models] [--dry-run]`: push a run's named datasets
and models (harness/cards) to the Hugging Face Hub with `huggingface_hub`.

Repositories, for a run whose artifacts are datasets/<variant>/ and models/<name>/:
    dataset  ORG/NAME-<variant>-data    README.md (the dataset card) + data/train.jsonl
    model    ORG/NAME-<name>            README.md (the model card, linking its dataset repo) + the model's files
`<name>` is the variant, `<variant>-seed<N>` when the recipe trains several seeds. ORG/NAME defaults to your Hub
user and the run's name. Names are made Hub-safe (characters other than letters, digits, '.', '_' and '-' become
'-'). Existing repositories are reused (a new commit on main); `--private` makes new ones private (an existing
repository keeps its visibility).

The token comes from HF_TOKEN or HUGGING_FACE_HUB_TOKEN only (never from a saved login), is sent only as the
Authorization header by huggingface_hub, and is never written or printed. HF_ENDPOINT points at another Hub.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

TOKEN_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


class PublishError(HarnessError):
    """One clear line for the user, and the exit code: 2 bad input (token, name, access), 1 the Hub failed."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Upload:
    kind: str  # "dataset" | "model"
    repo_id: str
    folder: Path  # the named local folder
    fact: dict[str, Any]
    files: list[str] = field(default_factory=list)  # paths in the repo, README.md first


def hub_name(text: str) -> str:
    """A Hub-safe repository name part."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text)
    name = re.sub(r"-{2,}", "-", re.sub(r"\.{2,}", ".", name)).strip("-.")
    if not name:
        raise PublishError(f"'{text}' gives no usable Hub repository name; pass --to ORG/NAME")
    return name


def token_from_env() -> str | None:
    for name in TOKEN_ENV:
        if value := os.environ.get(name, "").strip():
            return value
    return None


def load_facts(run_dir: Path) -> dict[str, Any]:
    """The run's artifacts.json, written by `cgd run`; rebuilt from run.json when it is missing."""
    from harness.cards.artifacts import ARTIFACTS_FILE, write_artifacts

    path = run_dir / ARTIFACTS_FILE
    if not path.is_file():
        run_json = run_dir / "run.json"
        if not run_json.is_file():
            raise PublishError(f"{run_dir}: no run.json here (not a run folder)")
        from harness.store import read_run_json

        info = read_run_json(run_json)
        write_artifacts(info, None, run_json.absolute().parent.parent)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PublishError(f"{path}: cannot be read ({exc})") from None


def _folder_files(folder: Path) -> list[str]:
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if p.is_file() and not p.name.startswith("."))
    return ["README.md", *[f for f in files if f != "README.md"]]


def plan_uploads(run_dir: Path, namespace: str, name: str, only: str | None) -> list[Upload]:
    facts = load_facts(run_dir)
    uploads = []
    if only in (None, "datasets"):
        for variant, fact in facts.get("datasets", {}).items():
            folder = run_dir / fact["folder"]
            uploads.append(Upload("dataset", dataset_repo_of(namespace, name, variant), folder, fact,
                                  _folder_files(folder)))
    if only in (None, "models"):
        for model, fact in facts.get("models", {}).items():
            folder = run_dir / fact["folder"]
            uploads.append(Upload("model", f"{namespace}/{hub_name(f'{name}-' + model.replace('@', '-'))}", folder,
                                  fact, _folder_files(folder)))
    return uploads


def dataset_repo_of(namespace: str, name: str, variant: str) -> str:
    return f"{namespace}/{hub_name(f'{name}-{variant}-data')}"


def hub_card(upload: Upload, endpoint: str, namespace: str, name: str) -> str:
    """The card as published: the load snippet names the Hub repository, a model card links its dataset repo."""
    from harness.cards.dataset_card import render_dataset_card
    from harness.cards.model_card import render_model_card

    if upload.kind == "dataset":
        return render_dataset_card(upload.fact, {"self": upload.repo_id})
    links = {}
    if upload.fact.get("dataset"):
        repo = dataset_repo_of(namespace, name, upload.fact["variant"])
        links = {"dataset": f"{endpoint.rstrip('/')}/datasets/{repo}", "dataset_repo": repo}
    return render_model_card(upload.fact, links)


def _hub_failure(exc: Exception, what: str) -> PublishError:
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(exc, OfflineModeIsEnabled):
        return PublishError("HF_HUB_OFFLINE is set: publishing needs the Hub; unset it for `cgd publish`")
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        said = (exc.server_message or "").strip().splitlines()
        said_text = f": {said[0][:200]}" if said else ""
        if status == 401:
            return PublishError(f"{what}: the Hub refused the token (401 Unauthorized){said_text}; check HF_TOKEN")
        if status == 403:
            return PublishError(f"{what}: the token may not write there (403 Forbidden){said_text}; use a write "
                                "token, or --to a namespace you may write to")
        if status == 409:
            return PublishError(f"{what}: conflict (409){said_text}", 1)
        return PublishError(f"{what}: the Hub answered {status}{said_text}", 1 if status >= 500 else 2)
    first = (str(exc).splitlines() or [""])[0][:200]
    if isinstance(exc, ValueError):  # huggingface_hub's own checks (a repository id it will not take)
        return PublishError(f"{what}: {first}")
    return PublishError(f"{what}: cannot reach the Hub ({type(exc).__name__}{': ' + first if first else ''})", 1)


def _hub_errors() -> tuple[type[BaseException], ...]:
    import httpx
    from huggingface_hub.errors import HfHubHTTPError

    return HfHubHTTPError, httpx.HTTPError, OSError, ValueError


def publish(run_dir: Path, to: str | None, *, private: bool, only: str | None, dry_run: bool,
            echo: Any = print) -> list[dict[str, Any]]:
    """Publish (or with dry_run, describe) a run's artifacts. Returns one {kind, repo_id, url?, files} per upload."""
    if only not in (None, "datasets", "models"):
        raise PublishError(f"--only: expected 'datasets' or 'models', got '{only}'")
    if not run_dir.is_dir():
        raise PublishError(f"no such run folder: {run_dir}")
    if to is not None and (to.count("/") != 1 or not all(to.split("/"))):
        raise PublishError(f"--to: expected ORG/NAME, got '{to}'")
    token = token_from_env()
    if token is None and not dry_run:
        raise PublishError("no Hub token: set HF_TOKEN (or HUGGING_FACE_HUB_TOKEN) to a write token; "
                           "`cgd publish` reads it from the environment only")
    from huggingface_hub import HfApi

    api = HfApi(token=token or False)
    run_name = json.loads((run_dir / "run.json").read_text()).get("recipe") if (run_dir / "run.json").is_file() \
        else run_dir.name
    if to is not None:
        namespace, name = to.split("/")
        namespace = hub_name(namespace)
    else:
        name = run_name or run_dir.name
        if token is None:
            namespace = "<your Hub user>"
        else:
            try:
                namespace = api.whoami(token=token)["name"]
            except _hub_errors() as exc:
                raise _hub_failure(exc, "whoami") from None
    name = hub_name(name)
    uploads = plan_uploads(run_dir, namespace, name, only)
    if not uploads:
        raise PublishError(f"{run_dir}: nothing to publish (no exported dataset or trained model"
                           f"{' of that kind' if only else ''}; has `cgd run` reached export?)")
    done = []
    for up in uploads:
        size = sum((up.folder / f).stat().st_size for f in up.files if (up.folder / f).is_file())
        line = (f"{up.kind:<7} {up.repo_id}  <- {up.fact['folder']} ({len(up.files)} files, {size / 1e6:.2f} MB)"
                f"{', private' if private else ''}")
        if dry_run:
            echo(f"would publish {line}")
            done.append({"kind": up.kind, "repo_id": up.repo_id, "files": up.files})
            continue
        try:
            url = api.create_repo(up.repo_id, repo_type=up.kind, private=True if private else None, exist_ok=True,
                                  token=token)
            with tempfile.TemporaryDirectory(prefix="cgd-publish-") as tmp:
                staged = _stage(up, Path(tmp), hub_card(up, api.endpoint, namespace, name))
                api.upload_folder(repo_id=up.repo_id, folder_path=staged, repo_type=up.kind, token=token,
                                  commit_message=f"cgd-harness: {up.fact['run']} {up.kind} {up.fact['folder']}")
        except _hub_errors() as exc:  # every Hub failure becomes one line; anything else is a bug
            raise _hub_failure(exc, up.repo_id) from None
        echo(f"published {line}: {url}")
        done.append({"kind": up.kind, "repo_id": up.repo_id, "url": str(url), "files": up.files})
    return done


def _stage(up: Upload, tmp: Path, card: str) -> Path:
    """A folder to upload: the Hub flavour of the card, and symlinks to the named folder's other files."""
    (tmp / "README.md").write_text(card, encoding="utf-8")
    for rel in up.files[1:]:
        dest = tmp / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.symlink((up.folder / rel).resolve(), dest)
    return tmp
