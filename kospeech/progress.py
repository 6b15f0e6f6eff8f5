"""Progress bars of the library's long loops, and the one switch that turns them all off.

Training epochs, evaluation passes, the screening of recordings and corpus synthesis show tqdm bars on stderr. A
process whose progress is reported another way turns them off with :func:`set_progress_bars` (the service's server
and worker: a training job's progress is in its row, and bars would fill their logs with carriage returns);
``TQDM_DISABLE=1`` in the environment does the same for one run.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from tqdm.auto import tqdm

__all__ = ["progress_bar", "set_progress_bars"]

_bars_enabled = True


def set_progress_bars(enabled: bool) -> None:
    """Turn the library's progress bars on or off for this process."""
    global _bars_enabled
    _bars_enabled = enabled


def progress_bar(iterable: Optional[Iterable] = None, disable: Optional[bool] = False, **options: Any) -> tqdm:
    """A tqdm bar over ``iterable`` (or updated by hand), unless bars are off.

    Args:
        iterable: what to iterate over, or ``None`` for a bar updated with ``update``.
        disable: ``True`` hides this bar; ``None`` shows it only on a terminal (tqdm's rule); ``False`` leaves it to
            the process's switch and to ``TQDM_DISABLE`` (passing tqdm an explicit ``False`` would override that).
        options: other tqdm options (``total``, ``desc``, ``unit``, ``leave``, ...).

    Returns:
        The bar.
    """
    if disable or not _bars_enabled:
        options["disable"] = True
    elif disable is None:
        options["disable"] = None
    return tqdm(iterable, **options)
