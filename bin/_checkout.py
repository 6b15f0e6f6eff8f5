"""Imported first by the ``bin/`` shims: puts this checkout first on ``sys.path``, so ``python bin/<tool>.py`` runs
the checkout's code whether or not kospeech is installed."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
