"""The instance secret that signs every link: from settings, or generated once and kept
in the data directory so that ``serve`` and the CLI (run separately) sign alike."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from signaling.data_files import private_directory
from signaling.settings import Settings

SECRET_FILE = "secret.key"
SECRET_BYTES = 32
# Shorter than this cannot be a file we wrote: refuse rather than sign with a weak key.
MIN_SECRET_BYTES = 16


class SecretError(Exception):
    """The secret file cannot be used safely; the message says what to do."""


def secret_path(settings: Settings) -> Path:
    return settings.data_dir / SECRET_FILE


def load_or_create_secret(settings: Settings) -> bytes:
    """The signing key: ``settings.secret`` if set, else the data directory's secret file
    (created with mode 0600 on first use)."""
    if settings.secret is not None:
        return settings.secret.get_secret_value().encode("utf-8")
    path = secret_path(settings)
    if not path.exists():
        _create(path)
    return _read(path)


def _create(path: Path) -> None:
    private_directory(path.parent)
    # Written under a temporary name and linked into place: a node starting at the same
    # moment never reads a half-written key, and the first writer wins.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, secrets.token_bytes(SECRET_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()


def _read(path: Path) -> bytes:
    try:
        info = path.stat()
    except OSError as exc:
        raise SecretError(f"cannot read the secret file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise SecretError(f"the secret file {path} is not a regular file")
    if info.st_mode & 0o077:
        raise SecretError(
            f"the secret file {path} can be read or written by other users "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
        )
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise SecretError(f"cannot read the secret file {path}: {exc.strerror}") from None
    if not key:
        raise SecretError(
            f"the secret file {path} is empty; delete it to generate a new one "
            f"(links issued with the old secret stop working)"
        )
    if len(key) < MIN_SECRET_BYTES:
        raise SecretError(
            f"the secret file {path} holds only {len(key)} bytes (at least "
            f"{MIN_SECRET_BYTES} are needed); delete it to generate a new one"
        )
    return key
