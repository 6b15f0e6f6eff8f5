"""API keys: created once, shown once, stored as a lookup prefix plus a SHA-256 digest, compared in constant time.

A key reads ``ksk_<prefix>_<secret>`` (a tenant's key) or ``ksu_<prefix>_<secret>`` (a user key, which acts as one
user of its tenant: a server older than user keys refuses that form instead of taking it for a tenant's key): 12 hex
characters of prefix (the row is found by it, and ``kospeech-keys list`` shows it) and 256 random bits of secret. The
database holds the prefix and the SHA-256 of the whole key; a presented key is hashed and compared with
:func:`hmac.compare_digest`. A high-entropy random secret needs no slow password hash: SHA-256 cannot be inverted and a guess has no better odds than 2**-256.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import List, Optional

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from kospeech.errors import InvalidNameError
from kospeech.models.adapter_manager import validate_adapter_name
from kospeech.service.models import ApiKey, Tenant, User, utcnow

__all__ = [
    "KEY_PREFIX",
    "USER_KEY_PREFIX",
    "KeyRecord",
    "authenticate",
    "create_key",
    "delete_user_keys",
    "is_well_formed_key",
    "key_is_live",
    "key_prefix",
    "list_keys",
    "revoke_key",
]

KEY_PREFIX = "ksk"
USER_KEY_PREFIX = "ksu"
_PREFIX_HEX = 12


@dataclass
class KeyRecord:
    """What ``kospeech-keys list`` shows of a key (never the key).

    Attributes:
        prefix: the key's public lookup part.
        tenant: its tenant's name.
        admin: whether it is an admin key.
        user_id: the one user the key may act as, or ``None`` (the whole tenant).
        created_at: when it was made.
        revoked_at: when it was revoked, or ``None``.
    """

    prefix: str
    tenant: str
    admin: bool
    user_id: Optional[str]
    created_at: datetime
    revoked_at: Optional[datetime]


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _split(key: str) -> Optional[str]:
    """The prefix of a well-formed key, else ``None``."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] not in (KEY_PREFIX, USER_KEY_PREFIX) or len(parts[1]) != _PREFIX_HEX:
        return None
    return parts[1]


def is_well_formed_key(text: str) -> bool:
    """Whether ``text`` has the form of a key (``ksk_`` or ``ksu_<prefix>_<secret>``); says nothing of whether it is
    valid."""
    return _split(text) is not None


def key_prefix(prefix_or_key: str) -> str:
    """The prefix a key is listed and revoked by, never a secret: of a key (whole or cut short, well-formed or not,
    pasted with spaces around it or ``Bearer`` before it) the part after ``ksk_``/``ksu_``; of other text, the part
    before any ``_`` (a prefix has none)."""
    text = prefix_or_key.strip()
    if text[:7].lower() == "bearer ":
        text = text[7:].strip()
    parts = text.split("_", 2)
    if len(parts) >= 2 and parts[0] in (KEY_PREFIX, USER_KEY_PREFIX):
        return parts[1]
    return parts[0]


def create_key(session: Session, tenant_name: str, admin: bool = False, user_id: Optional[str] = None) -> str:
    """Make a key for ``tenant_name`` (creating the tenant on first use) and return it; only its digest is stored.

    Args:
        session: an open session (committed by the caller).
        tenant_name: the tenant; the adapter-name rule applies (it names a folder under ``data_dir/tenants``).
        admin: mark the key as an admin key.
        user_id: limit the key to this one user of the tenant (the user-id rule applies; the user need not exist
            yet: the key may create it; deleting the user revokes the key). A key without one acts for the whole
            tenant.

    Returns:
        The new key, the only time it is ever shown.

    Raises:
        InvalidNameError: a tenant name or user id that breaks the rule, or differs only in case from an existing
            tenant's or user's (both would share one folder on a case-insensitive file system); the message starts
            with ``tenant:`` or ``user:``.
        ValueError: an admin key limited to one user.
    """
    if admin and user_id is not None:
        raise ValueError("an admin key acts for the whole tenant; it cannot be limited to one user")
    for kind, name, what in (("tenant", tenant_name, "tenant name"), ("user", user_id, "user id")):
        try:
            if name is not None:
                validate_adapter_name(name, what)
        except InvalidNameError as exc:
            raise InvalidNameError(f"{kind}: {exc}") from exc
    tenant = session.scalar(select(Tenant).where(func.lower(Tenant.name) == tenant_name.lower()))
    if tenant is not None and tenant.name != tenant_name:
        raise InvalidNameError(
            f"tenant: {tenant_name!r} differs only in case from the existing tenant {tenant.name!r}; use "
            f"{tenant.name!r}"
        )
    if tenant is not None and user_id is not None:
        existing = session.scalar(
            select(User.user_id).where(User.tenant_id == tenant.id, func.lower(User.user_id) == user_id.lower())
        )
        if existing is not None and existing != user_id:
            raise InvalidNameError(
                f"user: {user_id!r} differs only in case from the existing user {existing!r}; use {existing!r}"
            )
    if tenant is None:
        tenant = Tenant(name=tenant_name)
        session.add(tenant)
        session.flush()
    prefix = secrets.token_hex(_PREFIX_HEX // 2)
    key = f"{USER_KEY_PREFIX if user_id else KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(tenant_id=tenant.id, prefix=prefix, digest=_digest(key), admin=admin, user_id=user_id))
    session.flush()
    return key


def list_keys(session: Session) -> List[KeyRecord]:
    """Every key (revoked ones included), by tenant then creation time."""
    rows = session.execute(
        select(ApiKey, Tenant.name).join(Tenant, ApiKey.tenant_id == Tenant.id).order_by(Tenant.name, ApiKey.id)
    )
    return [KeyRecord(key.prefix, name, key.admin, key.user_id, key.created_at, key.revoked_at) for key, name in rows]


def delete_user_keys(session: Session, tenant_id: int, user_id: str) -> int:
    """Delete the keys, live or revoked, that act as ``user_id`` of the tenant: part of the user's deletion (the id
    may later name someone else, and a deleted user keeps no row); returns how many."""
    return session.execute(
        delete(ApiKey).where(ApiKey.tenant_id == tenant_id, func.lower(ApiKey.user_id) == user_id.lower())
    ).rowcount


def revoke_key(session: Session, prefix: str) -> bool:
    """Revoke the key with ``prefix`` (or the whole key); returns False when there is no such live key."""
    prefix = key_prefix(prefix)
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None)))
    if key is None:
        return False
    key.revoked_at = utcnow()
    return True


def key_is_live(session: Session, key_id: int) -> bool:
    """Whether the key row ``key_id`` exists and is not revoked (a request's key checked again after its body)."""
    return session.scalar(select(ApiKey.id).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))) is not None


def authenticate(session: Session, presented: str) -> Optional[ApiKey]:
    """The live key row matching ``presented`` (its tenant loaded), or ``None`` (malformed, unknown or revoked)."""
    prefix = _split(presented)
    if prefix is None:
        return None
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None or not hmac.compare_digest(key.digest, _digest(presented)) or key.revoked_at is not None:
        return None
    return key
