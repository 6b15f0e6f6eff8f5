"""Users' adapter versions: recording a new one, and which one is in force.

The database is the one record of which adapter a user is served: the user's ``active`` ``adapter_versions`` row,
whose ``file`` was written (atomically, under a name no other version uses) before the row was committed and is never
changed afterwards. Activating a version is therefore one database commit: a process killed at any moment leaves the
previous version in force or the new one, never a file of one version served under the number of another. A crash
between writing the file and the commit leaves an unreferenced file behind, which the retried job does not reuse
(it writes its own) and which goes with the user's folder when the user is deleted.

Only the newest few inactive versions are kept (``server.keep_inactive_versions``): :func:`drop_old_versions` deletes
the older ones' rows in the transaction that records a new version, and their files are removed once it has committed.
A version number is never used twice: the newest version always stays.

:func:`record_version` is what a training job does with its result, and also how an adapter trained elsewhere (e.g.
with ``kospeech-train-adapters``) is given to a user.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from kospeech.service.db import database_now
from kospeech.service.models import AdapterVersion, User
from kospeech.service.storage import Storage

__all__ = ["active_version", "drop_old_versions", "record_version"]

logger = logging.getLogger(__name__)


def active_version(session: Session, user_pk: str) -> Optional[AdapterVersion]:
    """The version a user is served now, or ``None`` (the base model serves them)."""
    return session.scalar(
        select(AdapterVersion).where(AdapterVersion.user_pk == user_pk, AdapterVersion.active.is_(True))
    )


def record_version(
    session: Session,
    storage: Storage,
    user: User,
    adapter_file: Path,
    file_name: str,
    adapter_type: str,
    rejected: bool,
    cer_before: Optional[float] = None,
    cer_after: Optional[float] = None,
) -> AdapterVersion:
    """Keep ``adapter_file`` as the user's next version, made active unless ``rejected``; the caller commits.

    The file is copied (atomically) to ``versions/<file_name>.pt`` in the user's folder first; the new row, and the
    deactivation of the previous active one, take effect when ``session`` commits. A concurrent recording of the same
    user's next version makes one of the two commits fail on the ``(user, version)`` unique constraint.

    Args:
        session: an open session (the caller commits, or rolls back and removes the file).
        storage: the file layout.
        user: the user (a row of ``session``).
        adapter_file: a saved adapter for the service's base model.
        file_name: the version file's name, unique among the user's versions (a job uses ``<job_id>-<attempt>``).
        adapter_type: its registered type.
        rejected: the trainer's verdict (no better than the base on the held-out utterances): kept, never served.
        cer_before: the base model's held-out CER.
        cer_after: the adapter's held-out CER.

    Returns:
        The new row (flushed: its ``version`` is set).
    """
    version = (
        session.scalar(select(func.max(AdapterVersion.version)).where(AdapterVersion.user_pk == user.id)) or 0
    ) + 1
    target = storage.version_file(user.tenant.name, user.user_id, file_name)
    storage.copy_atomic(adapter_file, target)
    if not rejected:
        session.execute(update(AdapterVersion).where(AdapterVersion.user_pk == user.id).values(active=False))
    row = AdapterVersion(
        user_pk=user.id,
        version=version,
        adapter_type=adapter_type,
        cer_before=cer_before,
        cer_after=cer_after,
        active=not rejected,
        rejected=rejected,
        file=storage.relative(target),
        created_at=database_now(session),  # one clock for every server's and worker's versions
    )
    session.add(row)
    session.flush()
    return row


def drop_old_versions(session: Session, storage: Storage, user_pk: str, keep: int) -> List[Path]:
    """Delete the rows of the user's inactive versions beyond the newest ``keep``; the caller commits, then removes
    the returned files (a failed commit keeps both rows and files).

    Args:
        session: an open session (the one recording the new version, after :func:`record_version`).
        storage: the file layout.
        user_pk: the user's primary key.
        keep: inactive versions kept, newest first (>= 1: the version just replaced may still be loading for a request).

    Returns:
        The files of the deleted versions.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1 (the version just replaced may still be in use), got {keep}")
    stale = session.scalars(
        select(AdapterVersion)
        .where(AdapterVersion.user_pk == user_pk, AdapterVersion.active.is_(False))
        .order_by(AdapterVersion.version.desc())
        .offset(keep)
    ).all()
    for row in stale:
        session.delete(row)
    session.flush()
    return [storage.absolute(row.file) for row in stale]
