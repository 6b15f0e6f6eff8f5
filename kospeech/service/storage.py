"""Where the service keeps its files under ``data_dir``, and the file operations that must be atomic.

::

    data_dir/
      service.db                      default SQLite database
      queue.db                        huey's SQLite queue (server.queue=sqlite)
      uploads/                        uploads being decoded (deleted after each request; a killed server's are
                                      swept by job recovery once older than an hour)
      tenants/<tenant>/users/<user_id>/
        utterances/<utterance_id>.wav enrollment audio, 16 kHz mono 16-bit
        versions/<job_id>-<attempt>.pt trained adapters: the active one and the newest few others, accepted or
                                      rejected (server.keep_inactive_versions; imported ones: versions/<id>.pt)
        jobs/<job_id>-<attempt>/      a training run's folder (removed when the run ends, or by job recovery when
                                      its worker was killed)
      trash/                          deleted users' folders on their way out (swept at start once 10 minutes old)

Tenant and user ids follow the adapter-name rule (:func:`~kospeech.models.adapter_manager.validate_adapter_name`),
so no id can climb out of its folder. Every file is written through :mod:`kospeech.fileio` (temporary file, fsync,
rename): a reader sees the previous file or the new one, never half of one. A version file is written once, under a
name no other version uses, before its database row is committed; which version a user is served is only in the
database (the active ``adapter_versions`` row names its file).

Every server and worker must see the same ``data_dir``: servers write enrollment audio that workers read, workers
write adapters that servers read. On several machines it is a shared file system (NFS, a cloud file share).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sqlite3
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from kospeech.fileio import atomic_write
from kospeech.models.adapter_manager import validate_adapter_name

__all__ = ["ABANDONED_UPLOAD_SECONDS", "Storage", "storage_fault"]

logger = logging.getLogger(__name__)

TRASH_GRACE_SECONDS = 600.0
"""A deleted user's folder is left in ``trash/`` this long before a start sweeps it: a deletion in progress in another
process (milliseconds) may still put it back."""

ABANDONED_UPLOAD_SECONDS = 3600.0
"""An upload file this old belongs to a request whose server was killed: a request decodes its upload, already
received in full, within seconds and then removes it."""

_CLOCK_PROBE = ".clock-"
"""Name prefix of the file whose time stamp tells the uploads folder's own clock (never swept itself)."""


_SQLITE_READ_ONLY = {
    getattr(sqlite3, name)
    for name in ("SQLITE_READONLY", "SQLITE_READONLY_DBMOVED", "SQLITE_READONLY_DIRECTORY", "SQLITE_READONLY_ROLLBACK")
    if hasattr(sqlite3, name)
}
_FULL_SQLSTATES = ("53100",)  # PostgreSQL's disk_full
_READ_ONLY_SQLSTATES = ("25006",)  # read_only_sql_transaction: a standby, or default_transaction_read_only


def storage_fault(exc: BaseException) -> Optional[str]:
    """``"full"`` or ``"read_only"`` when ``exc``, or an exception it was raised from, is the storage refusing a write,
    else ``None``: not the request's fault, nor a bug, and it passes once an operator frees or remounts the disk.

    Full: ``ENOSPC``/``EDQUOT``, SQLite's ``SQLITE_FULL``, PostgreSQL's ``disk_full``. Read-only: ``EROFS``, SQLite's
    ``SQLITE_READONLY``, PostgreSQL's ``read_only_sql_transaction``.
    """
    seen = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        sqlstate = getattr(current, "sqlstate", None)
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return "full"
        if isinstance(current, OSError) and current.errno == errno.EROFS:
            return "read_only"
        if isinstance(current, sqlite3.Error):
            if getattr(current, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                return "full"
            if getattr(current, "sqlite_errorcode", None) in _SQLITE_READ_ONLY:
                return "read_only"
        if sqlstate in _FULL_SQLSTATES:
            return "full"
        if sqlstate in _READ_ONLY_SQLSTATES:
            return "read_only"
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return None


class Storage:
    """The file layout of one ``data_dir`` (see the module docstring).

    Args:
        data_dir: the service's data folder (created if missing).
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.tenants_dir = self.data_dir / "tenants"
        self.uploads_dir = self.data_dir / "uploads"
        self.trash_dir = self.data_dir / "trash"
        self.tenants_dir.mkdir(parents=True, exist_ok=True)
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        self.trash_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.sweep_trash()
        except OSError as exc:  # a read-only data folder: the server still starts, and answers 503 for writes
            logger.warning("could not sweep %s: %s", self.trash_dir, exc)

    def user_dir(self, tenant: str, user_id: str) -> Path:
        """``tenants/<tenant>/users/<user_id>`` (names checked against the adapter-name rule)."""
        return self.tenants_dir / validate_adapter_name(tenant) / "users" / validate_adapter_name(user_id)

    def utterance_file(self, tenant: str, user_id: str, utterance_id: str) -> Path:
        """Where an enrollment recording is kept."""
        return self.user_dir(tenant, user_id) / "utterances" / f"{validate_adapter_name(utterance_id)}.wav"

    def version_file(self, tenant: str, user_id: str, name: str) -> Path:
        """Where a version of the user's adapter is kept, under a ``name`` no other version of theirs uses."""
        return self.user_dir(tenant, user_id) / "versions" / f"{validate_adapter_name(name)}.pt"

    def job_dir(self, tenant: str, user_id: str, job_id: str) -> Path:
        """A training job's run folder (trainer output, the adapter it writes before activation)."""
        return self.user_dir(tenant, user_id) / "jobs" / validate_adapter_name(job_id)

    def relative(self, path: Path) -> str:
        """``path`` relative to ``data_dir`` (what the database stores, so ``data_dir`` can move)."""
        return Path(path).relative_to(self.data_dir).as_posix()

    def absolute(self, relative: str) -> Path:
        """The absolute path of a stored relative path."""
        return self.data_dir / relative

    @staticmethod
    def copy_atomic(source: Path, target: Path) -> Path:
        """Copy ``source`` to ``target`` atomically (readers see the old ``target`` or the whole new one)."""
        data = Path(source).read_bytes()
        return atomic_write(target, lambda handle: handle.write(data))

    def remove_run_folder(self, job_dir: Path) -> None:
        """Remove a training run's folder and everything in it, then the user's ``jobs/`` folder (and the user's
        own) when that leaves them empty (see :meth:`prune_empty_folders`)."""
        shutil.rmtree(job_dir, ignore_errors=True)
        self.prune_empty_folders(Path(job_dir).parent)

    def sweep_uploads(self, older_than_seconds: float = ABANDONED_UPLOAD_SECONDS) -> int:
        """Remove the upload files older than ``older_than_seconds`` (by modification time, see :meth:`_entries_older`):
        those of requests whose server was killed. Safe beside running servers, whose uploads are younger. Returns how
        many were removed."""
        removed = 0
        for path in self._entries_older(self.uploads_dir, older_than_seconds):
            try:
                if path.is_file():
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # another process' sweep took it
                continue
        if removed:
            logger.info("removed %d abandoned upload files from %s", removed, self.uploads_dir)
        return removed

    def sweep_trash(self, older_than_seconds: float = TRASH_GRACE_SECONDS) -> int:
        """Remove what deletions left in ``trash/`` (a crash, a late writer) once it is ``older_than_seconds`` (see
        :meth:`_entries_older`): a younger entry may be another process's deletion in progress, which puts the folder
        back should its commit fail. Returns how many were removed."""
        removed = 0
        for leftover in self._entries_older(self.trash_dir, older_than_seconds):
            shutil.rmtree(leftover, ignore_errors=True)
            removed += 1
        return removed

    @staticmethod
    def _entries_older(folder: Path, older_than_seconds: float) -> Iterator[Path]:
        """The entries of ``folder`` last modified more than ``older_than_seconds`` ago; one that goes meanwhile
        (another process' sweep) is skipped.

        Ages are measured on the file system's clock (the time stamp of a file made for the purpose), not this
        machine's: on a shared folder, a machine whose clock runs ahead would otherwise take live entries for old.
        """
        with tempfile.NamedTemporaryFile(dir=folder, prefix=_CLOCK_PROBE) as probe:
            cutoff = os.fstat(probe.fileno()).st_mtime - older_than_seconds
        for entry in folder.iterdir():
            try:
                if not entry.name.startswith(_CLOCK_PROBE) and entry.lstat().st_mtime < cutoff:
                    yield entry
            except FileNotFoundError:
                continue

    def prune_empty_folders(self, folder: Path) -> None:
        """Remove ``folder`` and then each parent while it is empty, up to the user's own folder: what a writer that
        lost a race with the user's deletion (a training run, an upload) recreated. A folder with anything in it (a
        user created again under the same id meanwhile) stays."""
        folder = Path(folder)
        # tenants/<tenant>/users/<user_id>/...: three parts or more is the user's folder or inside it
        while folder.is_relative_to(self.tenants_dir) and len(folder.relative_to(self.tenants_dir).parts) >= 3:
            try:
                folder.rmdir()
            except FileNotFoundError:
                pass
            except OSError:  # not empty
                return
            folder = folder.parent

    @contextmanager
    def deleting_user(self, tenant: str, user_id: str) -> Iterator[None]:
        """Remove every file of a user (audio, adapters, versions, job folders) around the commit of their deletion.

        The folder is moved into ``trash/`` when the block starts (one rename), *before* the caller commits the
        deletion of the user's rows inside the block: until that commit every other request still sees the user, so
        no user can be created again under the same id while the old folder is in place, and the new user's files
        can never be taken with it. When the block ends, the moved folder is removed; when it raises (the commit
        failed), the folder is put back. What a writer still adds to the moved folder is removed by a later
        :meth:`sweep_trash` (at each start, and in each round of job recovery).

        Run the deletion's statements (``session.flush()``) before the block: their row locks make a writer that
        re-creates the folder meanwhile wait for the commit, and then fail on the deleted user and remove its file.
        """
        folder = self.user_dir(tenant, user_id)
        doomed = self.trash_dir / f"{tenant}.{user_id}.{uuid.uuid4().hex}"
        try:
            folder.rename(doomed)
        except FileNotFoundError:
            yield
            return
        try:
            os.utime(
                doomed
            )  # its age in trash/ starts now (a mv keeps the folder's time; sweep_trash spares the young)
        except OSError as exc:
            logger.warning("user %s/%s: could not date %s in trash/: %s", tenant, user_id, doomed, exc)
        try:
            yield
        except BaseException:
            try:
                doomed.rename(folder)
            except OSError as exc:  # a late writer re-created the folder meanwhile: the files stay in trash/
                logger.error(
                    "user %s/%s: deletion failed and %s could not be put back: %s", tenant, user_id, doomed, exc
                )
            raise
        shutil.rmtree(doomed, ignore_errors=True)
        if doomed.exists():
            logger.warning(
                "user %s/%s: files added while deleting; removed by a later sweep of trash/", tenant, user_id
            )
        logger.info("deleted the files of user %s/%s", tenant, user_id)
