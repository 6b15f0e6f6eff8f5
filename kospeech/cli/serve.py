"""``kospeech-serve``: the personalization service's HTTP server (uvicorn), with an optional in-process worker.

    kospeech-serve server.port=8000 server.data_dir=./service_data server.base_model_path=pretrained/ds2_synthetic.pt

Every ``server.KEY=VALUE`` setting is listed by ``kospeech-serve --help`` (see :mod:`kospeech.service.settings`).
SIGTERM / Ctrl-C stop accepting connections, finish the requests in flight, then stop.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from typing import List, Optional, Sequence, Tuple

from sqlalchemy.engine import make_url

from kospeech.cli.common import setup_logging
from kospeech.errors import ConfigError, KospeechError
from kospeech.progress import set_progress_bars
from kospeech.service.settings import ServerConfig, check_model_settings, load_settings

__all__ = ["main", "parse", "settings_from_argv", "settings_help", "split_settings"]

GRACEFUL_SHUTDOWN_SECONDS = 30


def settings_help() -> str:
    """One line per ``server.*`` key: name, default and help."""
    defaults = ServerConfig()  # an instance: a list's default comes from its factory
    fields = dataclasses.fields(defaults)
    settings = [f"server.{item.name}={_as_typed(getattr(defaults, item.name))}" for item in fields]
    width = min(max(len(setting) for setting in settings), 44)  # a longer one pushes its own help along, alone
    lines = [f"  {setting:<{width}}  {item.metadata.get('help', '')}" for setting, item in zip(settings, fields)]
    return "settings (server.KEY=VALUE):\n" + "\n".join(lines)


def _as_typed(value: object) -> str:
    """A default as the command line takes it: ``null``, ``true`` and ``false`` (Python's ``None`` is refused), and a
    list as ``[a,b]``."""
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join(_as_typed(item) for item in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def split_settings(argv: Sequence[str]) -> Tuple[List[str], List[str]]:
    """(``server.*`` settings, other arguments) of a command line."""
    settings = [argument for argument in argv if argument.startswith("server.")]
    others = [argument for argument in argv if not argument.startswith("server.")]
    return settings, others


def settings_from_argv(overrides: Sequence[str], needs_model: bool = False) -> ServerConfig:
    """Load the settings and log to stderr at their level; a bad setting ends the process with one line.

    Args:
        overrides: ``server.KEY=VALUE`` arguments.
        needs_model: the process serves or trains (``kospeech-serve``, ``kospeech-worker``): a base checkpoint that
            is missing or unreadable ends it now, not at its first request or job. Its training runs then draw no
            progress bars (:func:`~kospeech.progress.set_progress_bars`): their progress is their jobs', and bars on
            stderr would fill the service's log with carriage returns.

    Returns:
        The settings.
    """
    if needs_model:
        set_progress_bars(False)
    try:
        settings = load_settings(overrides)
        if needs_model:
            from kospeech.checkpoint import load_checkpoint  # here: kospeech-keys needs no torch

            check_model_settings(settings)
            load_checkpoint(settings.base_model_path)
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    except (KospeechError, OSError, ValueError) as exc:
        sys.exit(f"error: server.base_model_path: {exc}")
    _check_database(settings.database())
    setup_logging(level=getattr(logging, settings.log_level.upper()))
    return settings


def _check_database(url: str) -> None:
    """Bring the database's schema to this release's, or end the process with one line when it cannot be reached
    or migrated (before a server, a worker or a key command starts)."""
    from sqlalchemy.exc import SQLAlchemyError

    from kospeech.errors import SchemaError
    from kospeech.service.db import create_db_engine, migrate

    step = "cannot connect to"
    try:
        engine = create_db_engine(url)
        with engine.connect():
            pass
        step = "cannot bring the schema up to date in"  # connected: what fails now is a migration
        migrate(engine)
    except (SchemaError, ConfigError) as exc:
        sys.exit(f"error: server.database_url: {exc}")
    except ImportError as exc:  # a URL whose driver is not installed (mysql://, ...)
        sys.exit(f"error: server.database_url: no driver for {make_url(url).drivername}: {exc}")
    except (SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        try:
            shown = make_url(url).render_as_string()  # the password hidden
        except SQLAlchemyError:
            sys.exit(f"error: server.database_url: not a database URL: {reason}")
        sys.exit(f"error: server.database_url: {step} {shown}: {reason}")
    engine.dispose()


def parse(description: str, argv: Optional[List[str]]) -> List[str]:
    """Answer ``--help`` (with the settings) and return the ``server.*`` arguments; anything else is refused."""
    parser = argparse.ArgumentParser(
        description=description, epilog=settings_help(), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("settings", nargs="*", metavar="server.KEY=VALUE")
    return parser.parse_args(argv).settings


def main(argv: Optional[List[str]] = None) -> None:
    """Parse the settings and run the server until it is stopped."""
    import uvicorn

    from kospeech.service.app import create_app

    overrides = parse("Run the kospeech personalization service (HTTP API).", argv)
    settings = settings_from_argv(overrides, needs_model=True)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
