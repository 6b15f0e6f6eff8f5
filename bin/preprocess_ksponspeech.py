"""``python bin/preprocess_ksponspeech.py ...`` = ``kospeech-preprocess-kspon ...``: KsponSpeech -> manifests + vocabulary; see kospeech/cli/preprocess_kspon.py."""

import _checkout  # noqa: F401  (this checkout first on sys.path)
from kospeech.cli.preprocess_kspon import main

raise SystemExit(main())
