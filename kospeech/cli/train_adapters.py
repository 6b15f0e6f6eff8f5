r"""``kospeech-train-adapters``: train adapters for many users in one process, sharing one frozen base model.

    python bin/train_adapters.py --users-dir data/demo_users/users --base-model pretrained/ds2_synthetic.pt \
        --adapter-save-dir ./adapters [--users user01,user02] [train.num_epochs=15 train.adapter_type=residual_head ...]

``--users-dir`` holds one enrollment manifest per user: ``<user>.tsv`` files, or ``<user>/enroll.tsv`` folders
(optionally with ``<user>/valid.tsv``), as in the built-in corpus' ``users/`` folder. Each user's adapter is written
to ``{adapter_save_dir}/{user}_adapter.pt``; per-user runs and ``results.json`` go to ``--output-dir``. Trailing
``train.KEY=VALUE`` arguments override ``configs/train/adapter_train.yaml`` exactly as with ``bin/main.py``.

Many users: they go through in groups of ``--group-size`` (one trunk cache per group, memory bounded by a group).
Many machines: each process takes one shard of the users (user ``k`` of the name-sorted list goes to shard
``k % n``), given by one of ``--shard i/n``, ``RANK`` / ``WORLD_SIZE`` (torchrun), or a Kubernetes indexed job's
``JOB_COMPLETION_INDEX`` with ``n`` from ``--num-shards`` or ``KOSPEECH_NUM_SHARDS``. A shard writes
``results.shard-{i}-of-{n}.json``, ``config.shard-{i}-of-{n}.yaml`` and ``train.shard-{i}-of-{n}.log``. Under
torchrun on a machine with GPUs each process trains on ``cuda:LOCAL_RANK`` (when ``train.device`` is ``auto`` or
``cuda``).

``-v`` / ``--verbose`` shows the DEBUG lines (written to the log file in any case) on the console too.

Exit status: 1 when a user got no adapter; but 0 (the users reported) when the shard comes from torchrun or a
Kubernetes indexed job, where a non-zero exit would stop the other processes or retry the whole shard.
"""

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Mapping, Optional, Tuple

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from kospeech.cli.common import (
    apply_adapter_recipe,
    config_dir,
    exit_on_user_errors,
    setup_logging,
    take_verbose_flag,
)
from kospeech.config import register_configs
from kospeech.errors import name_list
from kospeech.fileio import strict_json
from kospeech.trainer.configs import AdapterTrainConfig
from kospeech.trainer.distributed import local_rank_device
from kospeech.trainer.multi_user import DEFAULT_GROUP_SIZE, job_file_name, train_user_adapters

_PATH_OPTIONS = {
    "train.base_model_path": "--base-model",
    "train.adapter_save_dir": "--adapter-save-dir",
    "train.output_dir": "--output-dir",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users-dir", required=True, help="folder of per-user enrollment manifests")
    parser.add_argument("--base-model", required=True, help="base checkpoint (.pt) shared by every user")
    parser.add_argument("--adapter-save-dir", default="./adapters", help="where <user>_adapter.pt files go")
    parser.add_argument("--output-dir", default="runs/train_adapters", help="per-user runs, log and results.json")
    parser.add_argument("--users", help="comma-separated users to train (default: every user found)")
    parser.add_argument(
        "--group-size",
        type=int,
        default=DEFAULT_GROUP_SIZE,
        help=f"users trained together, one trunk cache per group (default {DEFAULT_GROUP_SIZE})",
    )
    parser.add_argument(
        "--shard", help="i/n: train shard i of n (user k of the sorted users goes to shard k %% n); default: all"
    )
    parser.add_argument(
        "--num-shards",
        type=int,
        help="n for a Kubernetes indexed job (the shard index is JOB_COMPLETION_INDEX); or KOSPEECH_NUM_SHARDS",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the users an earlier run of this job (same --output-dir and shard) gave an adapter; train the rest",
    )
    parser.add_argument("overrides", nargs="*", help="train.KEY=VALUE overrides of configs/train/adapter_train.yaml")
    return parser.parse_args()


def load_config(args: argparse.Namespace) -> AdapterTrainConfig:
    """``configs/train/adapter_train.yaml`` with the paths of the command line and the overrides."""
    register_configs()
    for override in args.overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in _PATH_OPTIONS:
            sys.exit(f"error: set {key} with {_PATH_OPTIONS[key]}, not as an override")
        if not key.startswith("train."):  # data.* and the rest: composed and then never read by this job
            sys.exit(f"error: {override}: only train.* settings apply here (the users' data comes from --users-dir)")
    # base_model_path is required by the schema; the placeholder is replaced below
    overrides = ["train=adapter_train", "train.base_model_path=unset", *args.overrides]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        job = compose(config_name="train", overrides=overrides)
    apply_adapter_recipe(job.train, args.overrides)
    # the paths are set on the finished config, never pasted into override strings: Hydra's grammar would read
    # "," "=" quotes and braces in them, and OmegaConf would interpolate "${...}"
    return dataclasses.replace(
        OmegaConf.to_object(job.train),
        base_model_path=str(Path(args.base_model).resolve()),
        adapter_save_dir=str(Path(args.adapter_save_dir).resolve()),
        output_dir=str(Path(args.output_dir).resolve()),
    )


def _whole_number(name: str, value: object) -> int:
    text = str(value).strip()
    if not text.isdigit():
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(text)


def resolve_shard(
    shard: Optional[str], num_shards: Optional[int], environ: Mapping[str, str]
) -> Optional[Tuple[int, int]]:
    """This process' shard ``(index, count)``, or ``None`` for every user.

    Taken from exactly one of: ``--shard i/n``; torchrun's ``RANK`` and ``WORLD_SIZE``; a Kubernetes indexed job's
    ``JOB_COMPLETION_INDEX`` with the count from ``--num-shards`` or ``KOSPEECH_NUM_SHARDS`` (Kubernetes does not
    tell a pod the job's ``completions``).

    Raises:
        ValueError: a malformed value (naming its source), a shard that does not exist, two sources at once (every
            process of the launcher would train the same shard), half of torchrun's pair, or a count without
            ``JOB_COMPLETION_INDEX`` (every pod of a job that is not indexed would train every user).
    """
    torchrun = [name for name in ("RANK", "WORLD_SIZE") if name in environ]
    indexed = "JOB_COMPLETION_INDEX" in environ
    sources = [
        source
        for source, present in (
            ("--shard", shard is not None),
            ("RANK/WORLD_SIZE", torchrun),
            ("JOB_COMPLETION_INDEX", indexed),
        )
        if present
    ]
    if len(sources) > 1:
        raise ValueError(f"the shard is given by both {sources[0]} and {sources[1]}; give it one way")
    count_name = "--num-shards" if num_shards is not None else "KOSPEECH_NUM_SHARDS"
    count_value = num_shards if num_shards is not None else environ.get("KOSPEECH_NUM_SHARDS")
    if count_value is not None and not indexed:
        raise ValueError(
            f"{count_name} counts the shards of a Kubernetes indexed job, but JOB_COMPLETION_INDEX is not set "
            "(elsewhere give --shard i/n)"
        )
    if shard is not None:
        index, _, count = shard.partition("/")
        if not (index.strip().isdigit() and count.strip().isdigit()):
            raise ValueError(f"--shard takes i/n, e.g. 0/4, got {shard!r}")
        source, resolved = "--shard", (int(index), int(count))
    elif torchrun:
        if len(torchrun) == 1:
            raise ValueError(f"only {torchrun[0]} is set: torchrun sets RANK and WORLD_SIZE together")
        source = "RANK/WORLD_SIZE"
        resolved = (_whole_number("RANK", environ["RANK"]), _whole_number("WORLD_SIZE", environ["WORLD_SIZE"]))
    elif indexed:
        if count_value is None:
            raise ValueError(
                "JOB_COMPLETION_INDEX is set: give the number of shards with --num-shards or KOSPEECH_NUM_SHARDS"
            )
        source = f"JOB_COMPLETION_INDEX/{count_name}"
        index_value = _whole_number("JOB_COMPLETION_INDEX", environ["JOB_COMPLETION_INDEX"])
        resolved = (index_value, _whole_number(count_name, count_value))
    else:
        return None
    if not 0 <= resolved[0] < resolved[1]:
        raise ValueError(f"{source}: shard {resolved[0]} of {resolved[1]} does not exist (shards count from 0)")
    return resolved


def main() -> None:
    """``kospeech-train-adapters`` (and ``python bin/train_adapters.py``); mistakes end with one ``error:`` line;
    ``-v`` / ``--verbose`` shows DEBUG lines on the console too."""
    take_verbose_flag()
    args = parse_args()
    exit_on_user_errors(lambda: train(args), "the same command with --resume keeps the adapters already trained")


def train(args: argparse.Namespace) -> None:
    """Train every user's adapter, print the table and the run's figures; exit 1 when a user got no adapter, unless
    the shard came from a launcher (torchrun, a Kubernetes indexed job): there a non-zero exit stops the other
    processes or retries the whole shard, so the failed users are only reported (and listed in the results file),
    except when no user of the shard got one: then the job itself is broken (a setting, the base, the disk) and
    exits 1 there too."""
    shard = resolve_shard(args.shard, args.num_shards, os.environ)
    from_launcher = shard is not None and args.shard is None
    # first: the recipe the config takes is logged
    setup_logging(Path(args.output_dir).resolve() / job_file_name("train", "log", shard))
    config = load_config(args)
    config = dataclasses.replace(config, device=local_rank_device(config.device, os.environ, torch.cuda.device_count()))
    users = None if args.users is None else [name for name in args.users.split(",") if name]
    results = train_user_adapters(
        config, Path(args.users_dir).resolve(), users=users, group_size=args.group_size, shard=shard, resume=args.resume
    )
    print(f"{'user':<16}{'base CER':>10}{'adapter CER':>13}{'epochs':>8}  adapter")
    for user, figures in results["users"].items():
        if figures["adapter_path"] is None:
            print(f"{user:<16}{'-':>10}{'-':>13}{'-':>8}  no adapter: {figures['error']}")
            continue
        before = figures["cer_before"] if figures["cer_before"] is not None else float("nan")
        after, epochs, path = figures["cer_after"], figures["epochs"], figures["adapter_path"]
        verdict = "  REJECTED (no better than the base; not served)" if figures["rejected"] else ""
        verdict += "  (kept from the earlier run)" if figures.get("resumed") else ""
        print(f"{user:<16}{before:>10.4f}{after:>13.4f}{epochs:>8}  {path}{verdict}")
    print(strict_json({key: value for key, value in results.items() if key != "users"}))
    failed = results["failed_users"]
    if failed:
        message = f"no adapter for {len(failed)} user(s): {name_list(failed)}"
        if not from_launcher or len(failed) == len(results["users"]):
            sys.exit(message)
        print(f"{message} (exit status 0 under a launcher: see the results file)", file=sys.stderr)


if __name__ == "__main__":
    main()
