"""Files of the data directory that only the node's own user may read.

The data directory holds the secret that signs every link and the SQLite store
with attendees' names and email addresses; exports of registrations hold the
same. A node creates the directory 0700 and these files 0600 whatever the
umask, and narrows them when it finds them wider (a copy restored with default
permissions). Recordings and HLS files are the event's media, made to be shared:
they keep the umask's mode, inside the directory only this user can enter.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

PRIVATE_DIRECTORY = 0o700
PRIVATE_FILE = 0o600


def private_directory(path: Path) -> None:
    """Create `path` (and its parents) if missing; the directory made for data is 0700.

    An existing directory is left as it is: its mode is the administrator's choice."""
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=PRIVATE_DIRECTORY)
    except FileExistsError:
        if path.is_dir():
            return  # another process of the node made it meanwhile
        raise
    # mkdir's mode passes through the umask; set it exactly.
    os.chmod(path, PRIVATE_DIRECTORY)


def private_file(path: Path) -> None:
    """Make sure the regular file `path` exists and only its owner can read or write it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != PRIVATE_FILE:
            os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)


def restrict(path: Path) -> None:
    """Narrow an existing file to 0600 (nothing if it is not there)."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_IMODE(path.stat().st_mode) != PRIVATE_FILE:
            os.chmod(path, PRIVATE_FILE)
