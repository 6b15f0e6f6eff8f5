"""Hydra schema of ``bin/make_corpus.py`` (``configs/make_corpus.yaml`` picks the values)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, Optional

__all__ = ["CorpusConfig", "SCHEMA_NAME"]

SCHEMA_NAME = "make_corpus_schema"


@dataclass
class CorpusConfig:
    """Which synthetic corpus to build and where. Size fields left at ``None`` keep the preset's value."""

    preset: str = field(default="demo", metadata={"help": "size preset: tiny (tests), demo (a few CPU minutes), bench"})
    out_dir: str = field(
        default="data/corpus_${preset}",
        metadata={"help": "corpus folder; a relative path starts at the launch directory"},
    )
    seed: int = field(default=0, metadata={"help": "corpus seed; the same seed gives byte-identical files"})
    num_workers: Optional[int] = field(
        default=None, metadata={"help": "synthesis processes (default: number of usable CPU cores)"}
    )
    num_base_speakers: Optional[int] = field(default=None, metadata={"help": "base speakers (train/dev/test)"})
    utterances_per_speaker: Optional[int] = field(default=None, metadata={"help": "utterances per base speaker"})
    num_base_channels: Optional[int] = field(default=None, metadata={"help": "clean-ish channels of the base speakers"})
    num_users: Optional[int] = field(default=None, metadata={"help": "held-out users"})
    enroll_per_user: Optional[int] = field(default=None, metadata={"help": "enrollment utterances per user"})
    test_per_user: Optional[int] = field(default=None, metadata={"help": "test utterances per user"})
    dev_fraction: Optional[float] = field(default=None, metadata={"help": "share of each base speaker in dev"})
    test_fraction: Optional[float] = field(default=None, metadata={"help": "share of each base speaker in test"})
    favourites_per_kind: Optional[int] = field(default=None, metadata={"help": "favourite names and places per user"})
    favourite_prob: Optional[float] = field(
        default=None, metadata={"help": "share of a user's sentences built around a favourite word"}
    )
    rare_prob: Optional[float] = field(
        default=None, metadata={"help": "chance that a base name/place slot takes a rare (favourite-pool) word"}
    )

    def size_overrides(self) -> Dict[str, Any]:
        """The size fields that are set (not ``None``), as keyword arguments for ``build_corpus``."""
        skip = {"preset", "out_dir", "seed", "num_workers"}
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        return {name: value for name, value in values.items() if value is not None}
