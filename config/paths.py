"""Default places on disk, derived from an environment mapping given by the caller."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import PurePath

FILES_DIR_NAME = "batchgate-files"


def default_files_dir(env: Mapping[str, str], platform: str) -> str:
    """``batchgate-files`` under the platform's per-user data directory: ``$XDG_DATA_HOME``
    or ``~/.local/share`` on Linux, ``~/Library/Application Support`` on macOS,
    ``%LOCALAPPDATA%`` on Windows. Reads ``env``, not the process environment (only when it
    names no home at all does the user database say where home is)."""
    home = env.get("HOME") or env.get("USERPROFILE") or os.path.expanduser("~")
    if platform == "win32":
        base = env.get("LOCALAPPDATA") or str(PurePath(home, "AppData", "Local"))
    elif platform == "darwin":
        base = str(PurePath(home, "Library", "Application Support"))
    else:
        base = env.get("XDG_DATA_HOME") or str(PurePath(home, ".local", "share"))
    return str(PurePath(base, FILES_DIR_NAME))
