"""``python bin/eval.py ...`` = ``kospeech-eval ...``: CER/WER of a checkpoint, optionally with adapters (Hydra); see kospeech/cli/eval.py."""

import _checkout  # noqa: F401  (this checkout first on sys.path)
from kospeech.cli.eval import main

raise SystemExit(main())
