"""What the three console scripts share: splitting ``server.KEY=VALUE`` settings from other arguments, logging."""

from __future__ import annotations

import logging
import sys
from typing import List, Optional, Sequence, Tuple

from kospeech.cli.common import setup_logging
from kospeech.errors import ConfigError
from kospeech.service.settings import ServerConfig, load_settings

__all__ = ["settings_from_argv", "split_settings"]


def split_settings(argv: Sequence[str]) -> Tuple[List[str], List[str]]:
    """(``server.*`` settings, other arguments) of a command line."""
    settings = [argument for argument in argv if argument.startswith("server.")]
    others = [argument for argument in argv if not argument.startswith("server.")]
    return settings, others


def settings_from_argv(overrides: Sequence[str], log_file: Optional[str] = None) -> ServerConfig:
    """Load the settings and set up logging at their level; a bad setting ends the process with one line.

    Args:
        overrides: ``server.KEY=VALUE`` arguments.
        log_file: also log to this file.

    Returns:
        The settings.
    """
    try:
        settings = load_settings(overrides)
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    setup_logging(log_file, level=getattr(logging, settings.log_level.upper()))
    return settings
