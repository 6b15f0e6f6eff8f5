r"""``kospeech-train``: train a DeepSpeech2 base model or a per-user adapter (Hydra; ``bin/main.py`` runs it too).

    python bin/main.py --config-name=train train=ds2_train
    python bin/main.py --config-name=train train=adapter_train \
        train.base_model_path=path/to/base.pt train.adapter_name=user_john train.adapter_save_dir=./adapters

Base training on several processes (DistributedDataParallel; see docs/performance.md for several machines):

    torchrun --standalone --nproc_per_node=2 bin/main.py --config-name=train train=ds2_train
"""

import functools
import logging
import os
import sys
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from kospeech.cli.common import (
    absolutize_paths,
    apply_adapter_recipe,
    command_line_values,
    config_dir,
    keys_set_by_preset,
    one_line_errors,
    own_folder_in_a_sweep,
    record_resolved_config,
    refuse_unknown_settings,
    refuse_unusable_output_folders,
    register_help,
    setup_logging,
    take_verbose_flag,
)
from kospeech.config import register_configs
from kospeech.device import resolve_device
from kospeech.errors import InvalidNameError
from kospeech.fileio import strict_json
from kospeech.models.adapter_manager import validate_adapter_name
from kospeech.trainer.configs import AdapterTrainConfig
from kospeech.trainer.distributed import cleanup_distributed, init_distributed, world_size_from_env
from kospeech.trainer.recipes import train_adapter_model, train_base_model

logger = logging.getLogger("kospeech.main")


def train_base(config: DictConfig) -> dict:
    """Train a base DeepSpeech2 from scratch."""
    return train_base_model(config)


def train_adapter(config: DictConfig) -> dict:
    """Train one user's adapter on a frozen base checkpoint."""
    return train_adapter_model(config)


def rejection_message(results: dict) -> str:
    """The plain sentence a user reads when their new adapter is not served."""
    name = results["adapter_name"]
    if results["previous_adapter_kept"]:
        serving = f"the adapter that was active for {name} stays active"
    else:
        serving = f"the base model serves {name}"
    return (
        f"REJECTED: the new adapter of {name!r} is no better than the base model ({results['rejected_reason']}); "
        f"{serving}. The rejected file is kept for inspection at {results['adapter_path']}."
    )


register_configs()
register_help()


@hydra.main(config_path=config_dir(), config_name="train", version_base="1.3")
@functools.partial(
    one_line_errors, resume_hint="a base training run goes on from its last checkpoint with train.resume=true"
)
def hydra_main(config: DictConfig) -> None:
    """The Hydra job: an adapter run for ``train=adapter_train``, base training otherwise."""
    refuse_unknown_settings(config)
    own_folder_in_a_sweep(config, "train.output_dir")
    absolutize_paths(config)
    if resolve_device(config.train.device).type == "cpu":  # the whole job, evaluations after training included
        torch.set_num_threads(max(1, config.train.num_threads))
    if OmegaConf.get_type(config.train) is AdapterTrainConfig:
        if world_size_from_env() > 1:
            raise ValueError(
                "adapter training runs in one process; to train many users at once use bin/train_adapters.py"
            )
        setup_logging(Path(config.train.output_dir) / "train.log")
        apply_adapter_recipe(config.train, HydraConfig.get().overrides.task, keys_set_by_preset("train"))
        # its config.yaml is the trainer's: the base checkpoint's features and architecture, not the groups' defaults
        results = train_adapter(config)
        print(strict_json(results))
        if results["rejected"]:
            print(rejection_message(results), file=sys.stderr)
        return
    # under torchrun: join the process group first; rank 0 alone logs to the console and the run folder
    context = init_distributed(config.train.ddp_backend, resolve_device(config.train.device))
    try:
        if context.is_main:
            setup_logging(Path(config.train.output_dir) / "train.log")
            record_resolved_config(config, Path(config.train.output_dir))
        else:
            setup_logging(level=logging.WARNING)
        results = train_base(config)
        if context.is_main:
            print(strict_json(results))
    finally:
        cleanup_distributed()


def main() -> None:
    """``kospeech-train`` (and ``python bin/main.py``): parse Hydra overrides from the command line and train.

    ``-v`` / ``--verbose`` (not a Hydra override) shows DEBUG logs, the resolved config and tracebacks.
    """
    take_verbose_flag()
    # the run folder's resolver refuses a bad name too (the guarantee); this gives the one-line message (not for a
    # sweep's list of names, which Hydra splits into one name per job)
    sweep = any(argument in ("-m", "--multirun") for argument in sys.argv[1:])
    for name in [] if sweep else command_line_values(sys.argv[1:], "train.adapter_name"):
        try:
            validate_adapter_name(name)
        except InvalidNameError as exc:
            sys.exit(f"error: train.adapter_name: {exc}")
    refuse_unusable_output_folders(sys.argv[1:], "train.output_dir")
    if int(os.environ.get("RANK", "0")) > 0:
        sys.argv.append("hydra.output_subdir=null")  # under torchrun rank 0 alone writes .hydra/ to the run folder
    hydra_main()


if __name__ == "__main__":
    main()
