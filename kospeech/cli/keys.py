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
    where = "the database is chosen with server.KEY=VALUE settings (server.data_dir, server.database_url) anywhere on "
    where += "the line: kospeech-keys --help lists them"
    create = commands.add_parser("create", help="make a key for a tenant (created on first use)", epilog=where)
    create.add_argument("--tenant", required=True, help="tenant name ([A-Za-z0-9_.-], up to 64 characters)")
    scope = create.add_mutually_exclusive_group()
    scope.add_argument("--admin", action="store_true", help="mark the key as an admin key")
    scope.add_argument(
        "--user",
        metavar="ID",
        help="limit the key to this one user of the tenant (for a person who enrolls themselves on the web page)",
    )
    commands.add_parser(
        "list", help="list keys (prefix, tenant, kind: admin, tenant or user=ID, created, revoked)", epilog=where
    )
    revoke = commands.add_parser("revoke", help="revoke a key by its prefix (or the whole key)", epilog=where)
    revoke.add_argument("prefix")
    return parser


def _run(args: argparse.Namespace, sessions) -> int:
    """One key command in one transaction, printed once committed (a new key is shown only if it was stored);
    returns the exit status."""
    from kospeech.errors import InvalidNameError
    from kospeech.service.db import session_scope
    from kospeech.service.keys import create_key, key_prefix, list_keys, revoke_key

    lines: List[str] = []
    with session_scope(sessions) as session:
        if args.command == "create":
            try:
                key = create_key(session, args.tenant, admin=args.admin, user_id=args.user)
            except InvalidNameError as exc:  # the message names the tenant or the user
                print(f"error: {exc}", file=sys.stderr)
                return 1
            kind = "admin key" if args.admin else f"key of user {args.user}" if args.user else "key"
            lines.append(f"new {kind} for tenant {args.tenant} (shown only now): {key}")
        elif args.command == "list":
            for record in list_keys(session):
                revoked = record.revoked_at.isoformat() if record.revoked_at else "-"
                kind = "admin" if record.admin else f"user={record.user_id}" if record.user_id else "tenant"
                lines.append(
                    f"{record.prefix}\t{record.tenant}\t{kind}\t{record.created_at.isoformat()}\trevoked={revoked}"
                )
        elif not revoke_key(session, args.prefix):  # messages name the prefix, never a whole key given here
            print(f"error: no live key with prefix {key_prefix(args.prefix)!r}", file=sys.stderr)
            return 1
        else:
            lines.append(f"revoked key {key_prefix(args.prefix)}")
    for line in lines:
        print(line)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Run one key command; returns the exit status."""
    from sqlalchemy.exc import IntegrityError

    from kospeech.service.db import create_db_engine, session_factory

    overrides, rest = split_settings(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(rest)
    settings = settings_from_argv(overrides)  # the schema is migrated there
    engine = create_db_engine(settings.database())
    try:
        return _run(args, session_factory(engine))
    except IntegrityError:  # another process created the same new tenant at this moment: its row is there now
        return _run(args, session_factory(engine))
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
