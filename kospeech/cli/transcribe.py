"""``kospeech-transcribe``: transcribe audio files with a base checkpoint and optional per-user adapters.

    python bin/inference.py --checkpoint base.pt audio/ one.wav
    python bin/inference.py --checkpoint base.pt --adapter-dir adapters --user user01 --format jsonl --timestamps clips/
    python bin/inference.py --checkpoint base.pt --adapter-dir adapters --user-map users.tsv --format jsonl clips/
    python bin/inference.py --checkpoint base.pt --format srt --output-dir subtitles/ recordings/

Prints one line per file on stdout: ``PATH<TAB>TEXT`` (``--format text``; a backslash, tab, CR or LF in a path is
written as ``\\\\``, ``\\t``, ``\\r``, ``\\n``) or a JSON object (``--format jsonl``,
with ``--timestamps`` its words' and tokens' start and end times). ``--format srt`` / ``vtt`` writes subtitles:
to stdout for a single file, or one ``<name>.srt`` / ``.vtt`` per input file into ``--output-dir``, beside the run's
options (``transcribe_config.yaml``). A file that
cannot be read is reported on stderr (and, with jsonl, as an ``{"path", "error"}`` line) and the exit status is 1;
an unknown user or a bad option stops before any audio is read, with exit status 2.
"""

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional

from omegaconf import OmegaConf
from tqdm.auto import tqdm

from kospeech.decode import check_beam_size
from kospeech.errors import KospeechError
from kospeech.fileio import atomic_write_text, strict_json
from kospeech.inference import (
    AUDIO_EXTENSIONS,
    Recognizer,
    Transcription,
    UnknownUserError,
    collect_audio_files,
    read_user_map,
    to_srt,
    to_vtt,
    transcribe_files,
    users_for_files,
)
from kospeech.models import AdapterCompatibilityError

logger = logging.getLogger(__name__)

SUBTITLE_WRITERS = {"srt": to_srt, "vtt": to_vtt}

SETTINGS_FILE = "transcribe_config.yaml"
"""What ``--output-dir`` gets beside the subtitles: the run's options, resolved (a run's config next to its outputs)."""


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="audio files and/or directories (searched recursively)")
    parser.add_argument("--checkpoint", required=True, help="base model checkpoint (.pt)")
    parser.add_argument("--adapter-dir", default=None, help="directory of <user>_adapter.pt files")
    parser.add_argument("--user", default=None, help="adapter to use for every file (default: base model)")
    parser.add_argument(
        "--user-map",
        default=None,
        help="TSV file, AUDIO_PATH<TAB>USER per line (paths relative to the map's folder); "
        "files not listed use --user or the base model",
    )
    parser.add_argument(
        "--fallback-to-base", action="store_true", help="use the base model for users without an adapter"
    )
    parser.add_argument(
        "--allow-rejected",
        action="store_true",
        help="serve adapters that training rejected (no better than the base on the user's held-out utterances); "
        "by default those users get the base model",
    )
    parser.add_argument("--format", choices=("text", "jsonl", "srt", "vtt"), default="text", help="output format")
    parser.add_argument(
        "--timestamps",
        action="store_true",
        help="add per-word and per-token start and end times in seconds (needs --format jsonl)",
    )
    parser.add_argument(
        "--output-dir",
        default=None,
        help=f"srt/vtt: write <name>.srt or .vtt per input file here (needed for several), the run's options to "
        f"{SETTINGS_FILE}",
    )
    parser.add_argument(
        "--keep-silence",
        action="store_true",
        help="decode every input whole, silence included (no voice activity detection)",
    )
    parser.add_argument("--beam-size", type=int, default=1, help="1 = greedy CTC decoding, >1 = prefix beam search")
    parser.add_argument("--batch-size", type=int, default=16, help="segments per forward pass")
    parser.add_argument("--cache-size", type=int, default=32, help="adapters kept in memory")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument(
        "--extensions",
        default=",".join(AUDIO_EXTENSIONS),
        help="file extensions picked up from directories, comma separated",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 some files failed, 2 usage or setup error)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.batch_size < 1 or args.cache_size < 1:
        print("error: --batch-size and --cache-size must be >= 1", file=sys.stderr)
        return 2
    try:
        check_beam_size(args.beam_size)
    except ValueError as exc:
        print(f"error: --beam-size: {exc}", file=sys.stderr)
        return 2
    if args.timestamps and args.format != "jsonl":
        print("error: --timestamps needs --format jsonl", file=sys.stderr)
        return 2
    subtitles = args.format in SUBTITLE_WRITERS
    if args.output_dir is not None and not subtitles:
        print("error: --output-dir is for --format srt or vtt", file=sys.stderr)
        return 2
    if args.user_map is not None and args.adapter_dir is None:
        print("error: --user-map names users' adapters; it needs --adapter-dir", file=sys.stderr)
        return 2
    extensions = tuple(f".{ext.strip().lstrip('.').lower()}" for ext in args.extensions.split(",") if ext.strip())
    try:
        files = collect_audio_files(args.inputs, extensions)
        user_map = read_user_map(args.user_map) if args.user_map else {}
        recognizer = Recognizer.from_checkpoint(
            args.checkpoint,
            adapter_dir=args.adapter_dir,
            device=args.device,
            cache_size=args.cache_size,
            fallback_to_base=args.fallback_to_base,
            allow_rejected=args.allow_rejected,
            beam_size=args.beam_size,
            batch_size=args.batch_size,
            detect_speech=not args.keep_silence,
        )
        if not files:
            raise FileNotFoundError(f"no audio files ({', '.join(extensions)}) found in {args.inputs}")
        targets = _subtitle_targets(files, args.format, args.output_dir) if subtitles else {}
        users = users_for_files(files, user_map, args.user)
        recognizer.resolve_users(users)
        if args.output_dir is not None:
            _record_settings(args, recognizer, len(files))
    except (FileNotFoundError, ValueError, UnknownUserError, AdapterCompatibilityError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return _write_results(args, recognizer, files, users, targets)


def _record_settings(args: argparse.Namespace, recognizer: Recognizer, num_files: int) -> None:
    """Write the run's options to ``{output_dir}/transcribe_config.yaml`` before any subtitle: paths absolute, the
    device the recognizer chose, the number of input files."""
    settings = {
        **{key: value for key, value in vars(args).items() if key != "verbose"},
        "checkpoint": str(Path(args.checkpoint).resolve()),
        "adapter_dir": None if args.adapter_dir is None else str(Path(args.adapter_dir).resolve()),
        "user_map": None if args.user_map is None else str(Path(args.user_map).resolve()),
        "output_dir": str(Path(args.output_dir).resolve()),
        "inputs": [str(Path(item).resolve()) for item in args.inputs],
        "device": str(recognizer.device),
        "num_files": num_files,
    }
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(args.output_dir) / SETTINGS_FILE, OmegaConf.to_yaml(settings))


def _write_results(args: argparse.Namespace, recognizer: Recognizer, files, users, targets) -> int:
    """Transcribe ``files`` and write each result as it comes; the exit status (1 when a file failed).

    A file that cannot be transcribed is reported and the others go on; what stops the run (an adapter deleted or
    replaced meanwhile, an unwritable subtitle) ends it with one ``error:`` line, Ctrl-C with status 130. A reader
    that stops reading (``| head -1``) ends it quietly with 141, as shell tools end on SIGPIPE.
    """
    failed = 0
    subtitles = args.format in SUBTITLE_WRITERS
    timings = args.timestamps or subtitles
    # a bar on the terminal while the results go to a file or a pipe (on the terminal itself they show the progress)
    progress = tqdm(total=len(files), unit="file", desc="transcribing", disable=not _bar_wanted(), file=sys.stderr)
    try:
        for path, user, result in transcribe_files(recognizer, files, users, return_timestamps=timings):
            progress.update(1)
            if isinstance(result, Exception):
                failed += 1
                message = str(result)
                print(f"error: {message if str(path) in message else f'{path}: {message}'}", file=sys.stderr)
                if args.format == "jsonl":
                    print(strict_json({"path": str(path), "user": user, "error": str(result)}, indent=None))
            elif args.format == "jsonl":
                print(strict_json({"path": str(path), **result.to_dict()}, indent=None))
            elif subtitles:
                _write_subtitles(result, args.format, targets.get(path))
            else:
                print(f"{escape_field(str(path))}\t{result.text}")
            sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that exiting flushes nowhere, silently
        return 141
    except (KospeechError, OSError, ValueError) as exc:
        logger.debug("the run stopped", exc_info=True)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; the files written so far are whole", file=sys.stderr)
        return 130
    finally:
        progress.close()
    if failed:
        print(f"{failed} of {len(files)} files failed", file=sys.stderr)
    return 1 if failed else 0


def _bar_wanted() -> bool:
    """A progress bar only when stderr is a terminal and the results do not go to that terminal."""
    return sys.stderr.isatty() and not sys.stdout.isatty()


_FIELD_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\r": "\\r", "\n": "\\n"})


def escape_field(text: str) -> str:
    """``text`` with backslash, tab, CR and LF escaped (``\\\\``, ``\\t``, ``\\r``, ``\\n``), so a file name holding
    them cannot break the ``PATH<TAB>TEXT`` lines of ``--format text``."""
    return text.translate(_FIELD_ESCAPES)


def _subtitle_targets(files: List[Path], format_name: str, output_dir: Optional[str]) -> Dict[Path, Path]:
    """The subtitle file of each input (empty: print the single input's subtitles to stdout).

    Raises:
        ValueError: several inputs without ``--output-dir``, or two inputs that would write the same file.
    """
    if output_dir is None:
        if len(files) > 1:
            raise ValueError(f"--format {format_name} with {len(files)} files needs --output-dir")
        return {}
    if Path(output_dir).exists() and not Path(output_dir).is_dir():
        raise ValueError(f"--output-dir {output_dir} is a file, not a folder")
    targets: Dict[Path, Path] = {}
    claimed: Dict[Path, Path] = {}
    for path in files:
        target = Path(output_dir) / f"{path.stem}.{format_name}"
        if target in claimed:
            raise ValueError(f"{claimed[target]} and {path} would both write {target}; transcribe them separately")
        claimed[target] = path
        targets[path] = target
    return targets


def _write_subtitles(result: Transcription, format_name: str, target: Optional[Path]) -> None:
    text = SUBTITLE_WRITERS[format_name](result)
    if target is None:
        print(text, end="")
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, text)
    print(target)


if __name__ == "__main__":
    sys.exit(main())
