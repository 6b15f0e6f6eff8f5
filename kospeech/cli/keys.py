"""``kospeech-keys``: make, list and revoke API keys of the personalization service.

    kospeech-keys create --tenant acme [--admin | --user ID] [server.KEY=VALUE ...]   # the key: the last word printed
    kospeech-keys list [server.KEY=VALUE ...]
    kospeech-keys revoke PREFIX [server.KEY=VALUE ...]

A key is shown once, when it is made; the database keeps only its digest.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from kospeech.cli.serve import settings_from_argv, settings_help, split_settings

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Manage API keys of the kospeech personalization service.",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="make a key for a tenant (created on first use)")
    create.add_argument("--tenant", required=True, help="tenant name ([A-Za-z0-9_.-], up to 64 characters)")
    scope = create.add_mutually_exclusive_group()
    scope.add_argument("--admin", action="store_true", help="mark the key as an admin key")
    scope.add_argument(
        "--user",
        metavar="ID",
        help="limit the key to this one user of the tenant (for a person who enrolls themselves on the web page)",
    )
    commands.add_parser("list", help="list keys (prefix, tenant, kind: admin, tenant or user=ID, created, revoked)")
    revoke = commands.add_parser("revoke", help="revoke a key by its prefix (or the whole key)")
    revoke.add_argument("prefix")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run one key command; returns the exit status."""
    from kospeech.errors import InvalidNameError
    from kospeech.service.db import create_db_engine, migrate, session_factory, session_scope
    from kospeech.service.keys import create_key, key_prefix, list_keys, revoke_key

    overrides, rest = split_settings(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(rest)
    settings = settings_from_argv(overrides)
    engine = create_db_engine(settings.database())
    try:
        migrate(engine)
        with session_scope(session_factory(engine)) as session:
            if args.command == "create":
                try:
                    key = create_key(session, args.tenant, admin=args.admin, user_id=args.user)
                except InvalidNameError as exc:  # the message names the tenant or the user
                    print(f"error: {exc}", file=sys.stderr)
                    return 1
                kind = "admin key" if args.admin else f"key of user {args.user}" if args.user else "key"
                print(f"new {kind} for tenant {args.tenant} (shown only now): {key}")
            elif args.command == "list":
                for record in list_keys(session):
                    revoked = record.revoked_at.isoformat() if record.revoked_at else "-"
                    kind = "admin" if record.admin else f"user={record.user_id}" if record.user_id else "tenant"
                    print(
                        f"{record.prefix}\t{record.tenant}\t{kind}\t{record.created_at.isoformat()}\trevoked={revoked}"
                    )
            elif not revoke_key(session, args.prefix):  # messages name the prefix, never a whole key given here
                print(f"error: no live key with prefix {key_prefix(args.prefix)!r}", file=sys.stderr)
                return 1
            else:
                print(f"revoked key {key_prefix(args.prefix)}")
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
