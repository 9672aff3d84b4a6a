"""User-facing errors: anything a user can get wrong ends as one of these (exit code 2), never a traceback."""

from __future__ import annotations

import errno
from dataclasses import dataclass


class HarnessError(Exception):
    """Bad input or environment the user can fix; the CLI prints the message and exits 2."""


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class RecipeError(HarnessError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


WRITE_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EDQUOT}


def write_error(exc: BaseException) -> HarnessError | None:
    """A read-only, full or forbidden folder as one clear line naming the path; None for any other error."""
    if not isinstance(exc, OSError) or exc.errno not in WRITE_ERRNOS:
        return None
    where = exc.filename or "the runs folder"
    return HarnessError(f"cannot write {where}: {exc.strerror or exc} (free space, or choose a writable "
                        "folder with --runs-dir)")
