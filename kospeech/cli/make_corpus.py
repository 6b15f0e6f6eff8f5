"""``kospeech-make-corpus``: build the built-in synthetic Korean speech corpus (Hydra).

    python bin/make_corpus.py preset=tiny out_dir=data/corpus_tiny seed=0
    python bin/make_corpus.py preset=demo num_base_speakers=12 utterances_per_speaker=150 num_workers=2

Writes DIR/corpus.json, DIR/vocab.csv, DIR/base/{train,dev,test}.tsv and DIR/users/<user>/{enroll,test}.tsv;
a second run reuses the audio that is already there. Training jobs that read the folder keep the sizes it was
built with (``ensure_corpus`` without sizes), so the second example stays at 12 speakers in data/corpus_demo.
"""

import logging
from pathlib import Path

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from kospeech.cli.common import config_dir, one_line_errors, setup_logging, take_verbose_flag
from kospeech.config import register_configs
from kospeech.data.synthetic import CorpusConfig, build_corpus
from kospeech.errors import ConfigError

logger = logging.getLogger("kospeech.make_corpus")

register_configs()


@hydra.main(config_path=config_dir(), config_name="make_corpus", version_base="1.3")
@one_line_errors
def hydra_main(config: DictConfig) -> None:
    """The Hydra job: build (or complete) the corpus and print its card."""
    setup_logging()
    corpus_config: CorpusConfig = OmegaConf.to_object(config)
    logger.debug("resolved config:\n%s", OmegaConf.to_yaml(config, resolve=True))
    if not corpus_config.out_dir.strip():
        # to_absolute_path("") is the launch directory: the corpus' folders and files would land among the user's own
        raise ConfigError(
            f"out_dir={corpus_config.out_dir!r} is blank: name the corpus folder, "
            f"e.g. out_dir=data/corpus_{corpus_config.preset}"
        )
    out_dir = Path(to_absolute_path(corpus_config.out_dir))
    card = build_corpus(
        out_dir,
        preset=corpus_config.preset,
        seed=corpus_config.seed,
        num_workers=corpus_config.num_workers,
        **corpus_config.size_overrides(),
    )
    print(card.summary())
    names = [f"base/{split}" for split in ("train", "dev", "test")]
    names += [f"users/{user}/{split}" for user in card.users for split in ("enroll", "test")]
    for name in names:
        split = card.data["splits"][name]
        speakers = ",".join(split["speakers"])
        print(f"  {name:<24} {split['utterances']:>6} utterances {split['hours']:>8.3f} h  speakers {speakers}")


def main() -> None:
    """``kospeech-make-corpus`` (and ``python bin/make_corpus.py``); ``-v`` / ``--verbose`` shows DEBUG logs."""
    take_verbose_flag()
    hydra_main()


if __name__ == "__main__":
    main()
