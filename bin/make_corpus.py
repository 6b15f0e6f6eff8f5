"""``python bin/make_corpus.py ...`` = ``kospeech-make-corpus ...``: build the built-in synthetic corpus (Hydra); see kospeech/cli/make_corpus.py."""

import _checkout  # noqa: F401  (this checkout first on sys.path)
from kospeech.cli.make_corpus import main

raise SystemExit(main())
