"""One training job's model work: a user's enrollment utterances in, a trained adapter file and its figures out.

:class:`AdapterJobRunner` wraps the library's :class:`~kospeech.trainer.AdapterTrainer` with the recipe of the asked
adapter type (:meth:`AdapterTrainConfig.for_adapter_type`), the cached trunk (the recipe's default), the process'
torch threads (``server.torch_threads``) and no DataLoader worker processes. The adapter is written into the job's
own folder, never where transcription reads: activation (copying it over the user's active file, atomically) is the
job's decision, taken only when the trainer did not reject it (``trainer.outcome["rejected"]``: not better than the
base on the user's held-out utterances).

The trainer has no progress callback; the runner polls ``trainer.state`` (completed epochs of the configured
maximum) from a ticker thread and reports ``0.1 + 0.85 * epochs / max_epochs``, which also serves as the job's
heartbeat. Early stopping ends a run before the maximum, so progress can jump to 1.0 at the end.
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from kospeech.checkpoint import Checkpoint, load_checkpoint
from kospeech.data.manifest import ManifestEntry
from kospeech.device import resolve_device
from kospeech.errors import TrainingInterrupted
from kospeech.service.settings import ServerConfig
from kospeech.trainer import AdapterTrainConfig, AdapterTrainer

__all__ = ["AdapterJobRunner", "TrainingOutcome", "SETUP_PROGRESS"]

logger = logging.getLogger(__name__)

SETUP_PROGRESS = 0.1
"""Progress reported once the trainer is built (data screened, trunk about to be cached)."""


@dataclass
class TrainingOutcome:
    """What a training run produced.

    Attributes:
        adapter_file: the trained adapter in the job folder (``None`` when nothing was saved).
        rejected: the trainer's verdict: not better than the base on the held-out utterances.
        rejected_reason: why, or ``None``.
        cer_before: the base model's CER on the held-out utterances.
        cer_after: the adapter's best CER on them.
        adapter_type: the type trained.
    """

    adapter_file: Optional[Path]
    rejected: bool
    rejected_reason: Optional[str]
    cer_before: Optional[float]
    cer_after: Optional[float]
    adapter_type: str


class AdapterJobRunner:
    """Trains users' adapters on the service's base model (loaded once per process, on first use).

    Args:
        base_model_path: the base checkpoint.
        num_epochs: epochs per run, or ``None`` for the adapter type's recipe.
        heartbeat_seconds: seconds between two progress reports of a run (``server.job_heartbeat_seconds``).
        torch_threads: torch threads of a run (``server.torch_threads``: the process' own count, which a run in a
            server's background thread shares with the requests).
        max_minutes: a run's budget of training minutes (``server.train_max_minutes``), after which it stops and is
            judged on its best adapter so far; ``None`` for no limit.
        device: where a run trains (``server.device``: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``).
    """

    def __init__(
        self,
        base_model_path: str,
        num_epochs: Optional[int] = None,
        heartbeat_seconds: float = 2.0,
        torch_threads: int = 1,
        max_minutes: Optional[float] = None,
        device: str = "cpu",
    ) -> None:
        self.base_model_path = base_model_path
        self.num_epochs = num_epochs
        self.heartbeat_seconds = heartbeat_seconds
        self.torch_threads = torch_threads
        self.max_minutes = max_minutes
        self.device = resolve_device(device)
        self._checkpoint: Optional[Checkpoint] = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: ServerConfig) -> AdapterJobRunner:
        """The runner of a server or worker: its base model, epochs, heartbeat interval, threads and time budget."""
        return cls(
            settings.base_model_path,
            settings.train_num_epochs,
            settings.job_heartbeat_seconds,
            settings.torch_threads,
            settings.train_max_minutes,
            settings.device,
        )

    @property
    def checkpoint(self) -> Checkpoint:
        """The base checkpoint (weights, vocabulary, features)."""
        with self._lock:
            if self._checkpoint is None:
                self._checkpoint = load_checkpoint(self.base_model_path)
            return self._checkpoint

    def entries(self, utterances: Sequence[Tuple[Path, str]]) -> List[ManifestEntry]:
        """Manifest entries of ``(audio file, transcript)`` pairs, labelled with the base's vocabulary."""
        vocab = self.checkpoint.vocab
        return [ManifestEntry(Path(path), text, tuple(vocab.encode(text))) for path, text in utterances]

    def train(
        self,
        job_dir: Path,
        user_id: str,
        adapter_type: str,
        utterances: Sequence[Tuple[Path, str]],
        report: Callable[[float], bool],
        interrupt: Optional[threading.Event] = None,
    ) -> TrainingOutcome:
        """Train one adapter in ``job_dir`` (emptied first: a retried job starts clean).

        Args:
            job_dir: the job's folder.
            user_id: the user (the adapter's name).
            adapter_type: a registered adapter type.
            utterances: the user's enrollment recordings and transcripts.
            report: called with the progress (0..1) every ``heartbeat_seconds``, from another thread; returns
                whether the run should go on (``False`` sets ``interrupt``). An error it raises is logged and the
                reports go on.
            interrupt: set (by ``report``'s answer or by anyone) to stop the run after its current step.

        Returns:
            The outcome.

        Raises:
            TrainingError: nothing could be trained. InputError / ValueError: unusable data or settings.
            TrainingInterrupted: ``interrupt`` was set.
        """
        interrupt = interrupt if interrupt is not None else threading.Event()
        if job_dir.exists():
            shutil.rmtree(job_dir)
        checkpoint = self.checkpoint
        settings = {
            "base_model_path": self.base_model_path,
            "adapter_name": user_id,
            "adapter_save_dir": str(job_dir / "adapter"),
            "output_dir": str(job_dir / "run"),
            "device": str(self.device),
            "num_threads": self.torch_threads,
            "num_workers": 0,
            "max_minutes": self.max_minutes,
        }
        if self.num_epochs is not None:
            settings["num_epochs"] = self.num_epochs
        config = AdapterTrainConfig.for_adapter_type(adapter_type, **settings)
        built: List[AdapterTrainer] = []  # the trainer once built: the heartbeats start before (screening takes time)
        done = threading.Event()

        def send(progress: float) -> None:
            try:
                if not report(progress):
                    interrupt.set()
            except Exception:  # a database hiccup must not end the heartbeats of a run that goes on
                logger.exception(
                    "user %s: progress report failed; trying again in %g s", user_id, self.heartbeat_seconds
                )

        def tick() -> None:
            while not done.wait(self.heartbeat_seconds):
                if built:
                    send(SETUP_PROGRESS + 0.85 * min(built[0].state.epoch, config.num_epochs) / config.num_epochs)
                else:
                    send(0.0)  # still screening the recordings: a heartbeat all the same

        ticker = threading.Thread(target=tick, name=f"progress-{user_id}", daemon=True)
        ticker.start()
        try:
            trainer = AdapterTrainer(
                config,
                checkpoint.vocab,
                checkpoint.feature_config,
                self.entries(utterances),
                None,
                checkpoint.model_config,
            )
            trainer.interrupt = interrupt
            built.append(trainer)
            send(SETUP_PROGRESS)
            if interrupt.is_set():
                raise TrainingInterrupted("training interrupted before its first step")
            trainer.train(checkpoint.build_model(device=self.device), adapter_name=user_id)
        finally:
            done.set()
            ticker.join()
        stats = trainer.training_stats()
        return TrainingOutcome(
            adapter_file=trainer.adapter_path,
            rejected=bool(trainer.outcome["rejected"]),
            rejected_reason=trainer.outcome["rejected_reason"],
            cer_before=stats["cer_before"],
            cer_after=stats["cer_after"],
            adapter_type=adapter_type,
        )
