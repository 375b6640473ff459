"""The Files API's keys of ``batchgate_settings`` and their ``BATCHGATE_*`` overrides."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from config._fields import Scope, Section, to_int
from config.paths import default_files_dir
from config.settings import FilesSettings

FILES_KEYS = ("files_dir", "max_file_bytes", "max_batch_lines")


def _directory(value: str) -> str:
    # "~" is the user's home, as in a shell; relative paths stay relative to the working
    # directory of each process (batchgate up starts them all in the same one).
    return os.path.expanduser(value)


def parse_files(server: Section) -> FilesSettings:
    """The files settings of ``batchgate_settings`` (its keys are checked by the caller);
    ``files_dir`` defaults to the platform's data directory of the environment read."""
    out: dict[str, Any] = {}
    if (folder := server.get_str("files_dir")) is not None:
        out["files_dir"] = _directory(folder)
    else:
        out["files_dir"] = default_files_dir(server.env, sys.platform)
    if (limit := server.get_int("max_file_bytes", minimum=1)) is not None:
        out["max_file_bytes"] = limit
    if (lines := server.get_int("max_batch_lines", minimum=1)) is not None:
        out["max_batch_lines"] = lines
    return replace(FilesSettings(), **out)


def files_env_overrides(files: FilesSettings, env: Mapping[str, str], scope: Scope
                        ) -> FilesSettings:
    """``BATCHGATE_FILES_DIR``, ``BATCHGATE_MAX_FILE_BYTES`` and ``BATCHGATE_MAX_BATCH_LINES``
    over the file."""
    out: dict[str, Any] = {}
    if folder := env.get("BATCHGATE_FILES_DIR", "").strip():
        out["files_dir"] = _directory(folder)
    if limit := env.get("BATCHGATE_MAX_FILE_BYTES"):
        out["max_file_bytes"] = to_int(scope, "BATCHGATE_MAX_FILE_BYTES", limit, minimum=1)
    if lines := env.get("BATCHGATE_MAX_BATCH_LINES"):
        out["max_batch_lines"] = to_int(scope, "BATCHGATE_MAX_BATCH_LINES", lines, minimum=1)
    return replace(files, **out)
