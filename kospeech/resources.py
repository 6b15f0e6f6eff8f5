"""Files kospeech ships beside its package: the Hydra configs and the shipped base model.

A checkout (or an editable install) uses the repository's own folders, so edits there take effect at once. An installed
package uses the copies ``setup.py`` installs under ``<data folder>/share/kospeech/`` (its ``data_files``), where the
data folder is the install scheme's: ``sys.prefix`` for a virtual environment or a system install, the user base for
``pip install --user``.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path
from typing import List, Optional

__all__ = ["SHIPPED_BASE_MODEL", "local_or_shipped", "shipped_candidates", "shipped_path"]

SHIPPED_BASE_MODEL = "pretrained/ds2_synthetic.pt"
"""The base model trained on the built-in corpus, as the defaults name it (relative to where a command runs)."""


def _checkout_root() -> Optional[Path]:
    """The repository holding this package when it runs from a checkout (or an editable install), else ``None``.

    Only a folder with the project's ``setup.py`` counts: an installed package's parent is ``site-packages``, where
    another distribution's top-level ``configs/`` must not pass for ours.
    """
    root = Path(__file__).resolve().parents[1]
    return root if (root / "setup.py").is_file() else None


def _installed_roots() -> List[Path]:
    """``share/kospeech`` under each data folder an install scheme may have put ``setup.py``'s data files in."""
    folders = [Path(sys.prefix)]
    for scheme in (sysconfig.get_default_scheme(), sysconfig.get_preferred_scheme("user")):
        folders.append(Path(sysconfig.get_path("data", scheme)))
    unique = dict.fromkeys(folder / "share" / "kospeech" for folder in folders)
    return list(unique)


def shipped_candidates(relative: str) -> List[Path]:
    """Where a shipped file or folder ``relative`` (e.g. ``"configs"``) may be, the checkout's first."""
    checkout = _checkout_root()
    roots = ([checkout] if checkout is not None else []) + _installed_roots()
    return [root / relative for root in roots]


def shipped_path(relative: str) -> Optional[Path]:
    """The first existing :func:`shipped_candidates` entry of ``relative``, else ``None``."""
    return next((candidate for candidate in shipped_candidates(relative) if candidate.exists()), None)


def local_or_shipped(path: str) -> str:
    """``path`` itself, unless it names a shipped file (e.g. :data:`SHIPPED_BASE_MODEL`, the default) that is not
    there relative to the current folder: then the installed copy, when there is one.

    So a checkout's commands read ``./pretrained/...`` and an installed package's find the copy installed with it.
    """
    if os.path.exists(path) or os.path.isabs(path) or path != SHIPPED_BASE_MODEL:
        return path
    shipped = shipped_path(path)
    return str(shipped) if shipped is not None else path
