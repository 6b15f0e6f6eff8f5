"""``python bin/main.py ...`` = ``kospeech-train ...``: train a base model or a per-user adapter (Hydra; works under torchrun); see kospeech/cli/train.py."""

import _checkout  # noqa: F401  (this checkout first on sys.path)
from kospeech.cli.train import main

raise SystemExit(main())
