"""Private data stays private on disk: the SQLite database 0600, the instance folders 0700.

Files and folders otherwise get the process umask (022 is common), which lets every local account
read conversations, uploads and sessions. SQLite creates -wal and -shm with the database file's
own mode, so creating that file 0600 before the first connection covers all three; chmod also
tightens what an older version left behind.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("chat.files")
PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700
INSTANCE_FOLDERS = ("uploads", "sessions")  # under INSTANCE_PATH: uploaded text, file sessions


def private_folder(path: Path | str) -> Path:
    """The folder, created if missing, readable by this account only (mkdir's mode is cut by the umask)."""
    path = Path(path)
    path.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
    _chmod(path, PRIVATE_FOLDER)
    return path


def private_instance(instance_path: Path | str) -> None:
    """INSTANCE_PATH and the folders the app keeps there, 0700 (called once at start-up)."""
    root = private_folder(instance_path)
    for name in INSTANCE_FOLDERS:
        private_folder(root / name)


def private_database(path: Path | str) -> None:
    """Before connecting: the database file exists with mode 0600, and so do its -wal and -shm."""
    if str(path) == ":memory:" or str(path).startswith("file:"):
        return
    try:  # never open an existing database: closing any descriptor of it drops this process's SQLite locks
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, PRIVATE_FILE))  # 0600 from the start
    except FileExistsError:
        pass
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(f"{path}{suffix}"):
            _chmod(Path(f"{path}{suffix}"), PRIVATE_FILE)


def _chmod(path: Path, mode: int) -> None:
    """Set the mode; a path this account does not own is reported, not fatal."""
    try:
        if path.stat().st_mode & 0o777 != mode:
            path.chmod(mode)
    except OSError as error:
        log.warning("Could not make %s private (mode %o): %s", path, mode, type(error).__name__)
