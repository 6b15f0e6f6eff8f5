"""Helpers of the reliability suite: tiny models, checkpoints, adapters, WAV files and subprocess runners.

Everything here is small on purpose (one RNN layer of 16 units, 16 mel bins, sub-second audio): the suite runs on
two shared CPU cores. Faults are injected from outside the library (bytes on disk, signals, forward hooks), never by
replacing library code.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import pytest
import soundfile as sf
import torch

from kospeech.checkpoint import save_checkpoint
from kospeech.data.audio import save_audio
from kospeech.data.features import FeatureConfig
from kospeech.data.manifest import ManifestEntry, write_manifest
from kospeech.model_builder import build_deepspeech2
from kospeech.models import AdapterManager, DeepSpeech2
from kospeech.trainer import TrainConfig
from kospeech.vocabs import Vocabulary

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_RATE = 16000
FEATURES = FeatureConfig(num_mels=16)
MODEL_CONFIG = {"num_rnn_layers": 1, "rnn_hidden_dim": 16}
TOKENS = ["<pad>", "<sos>", "<eos>", "<blank>", " "] + list("가나다라마바사아자차카타파하")
SYLLABLES = TOKENS[5:]


def tone(seconds: float, seed: int = 0, sample_rate: int = SAMPLE_RATE, channels: int = 1) -> np.ndarray:
    """Seeded chirps with pauses and a little noise, float32 in [-0.5, 0.5]; (N,) or (N, channels)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    columns = []
    for _ in range(channels):
        signal_ = np.zeros_like(t)
        for _ in range(3):
            signal_ += np.sin(2 * np.pi * (rng.uniform(150, 2500) * t + rng.uniform(50, 400) * t**2))
        envelope = (np.sin(2 * np.pi * rng.uniform(1.5, 4.0) * t) > -0.3).astype(float)
        columns.append(0.15 * signal_ * envelope + 0.01 * rng.standard_normal(t.shape))
    data = np.stack(columns, axis=1) if channels > 1 else columns[0]
    return data.astype(np.float32)


def write_wav(path: Path, data: np.ndarray, sample_rate: int = SAMPLE_RATE, subtype: str = "PCM_16") -> Path:
    """Write any soundfile subtype (``save_audio`` only writes 16-bit); used to build odd test inputs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sample_rate, subtype=subtype, format="WAV")
    return path


def perturb(module: torch.nn.Module, seed: int, scale: float = 0.5) -> None:
    """Move every weight of ``module`` away from its initialization (fresh adapters are near no-ops)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)


def build_base(seed: int = 0, features: FeatureConfig = FEATURES) -> DeepSpeech2:
    """A tiny DeepSpeech2 with warmed-up BatchNorm statistics and non-blank outputs, in eval mode."""
    torch.manual_seed(seed)
    model = build_deepspeech2(features.feature_dim, len(TOKENS), MODEL_CONFIG)
    generator = torch.Generator().manual_seed(seed + 100)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 60, features.feature_dim, generator=generator), torch.tensor([60, 50, 40, 30]))
        model.fc[1].weight.mul_(4.0)
    return model.eval()


def save_base(path: Path, model: DeepSpeech2, features: FeatureConfig = FEATURES) -> Path:
    """Write ``model`` as a base checkpoint with the tiny vocabulary and ``features``."""
    return save_checkpoint(
        path,
        model,
        model_config={"input_dim": features.feature_dim, "num_classes": len(TOKENS), **MODEL_CONFIG},
        vocab=Vocabulary(TOKENS),
        feature_config=features,
    )


def save_user_adapter(
    model: DeepSpeech2,
    adapter_dir: Path,
    name: str,
    seed: int,
    adapter_type: str = "head",
    fill: Optional[float] = None,
) -> Path:
    """Attach an adapter with non-trivial weights (or every weight ``fill``), save it as ``name``, detach it."""
    sizes = {"encoder": {"bottleneck_dim": 4}}.get(adapter_type, {"hidden_dims": [8]})
    model.add_adapter(adapter_type, **sizes)
    if fill is None:
        perturb(model.adapter, seed)
    else:
        with torch.no_grad():
            for parameter in model.adapter.parameters():
                parameter.fill_(fill)
    try:
        return AdapterManager.save_adapter(
            model,
            adapter_dir,
            name,
            vocab_fingerprint=Vocabulary(TOKENS).fingerprint(),
            feature_config=FEATURES.to_dict(),
        )
    finally:
        model.remove_adapter()


@dataclass
class World:
    """A base checkpoint, an adapter directory with ``alice`` and ``bob``, and four short WAV files."""

    root: Path
    model: DeepSpeech2
    checkpoint: Path
    adapter_dir: Path
    wavs: List[Path]


@pytest.fixture
def world(tmp_path) -> World:
    model = build_base()
    checkpoint = save_base(tmp_path / "base.pt", model)
    adapter_dir = tmp_path / "adapters"
    for seed, name in enumerate(("alice", "bob"), start=1):
        save_user_adapter(model, adapter_dir, name, seed)
    wavs = [save_audio(tmp_path / "wav" / f"utt{i}.wav", tone(0.4 + 0.2 * i, seed=i), SAMPLE_RATE) for i in range(4)]
    return World(tmp_path, model, checkpoint, adapter_dir, wavs)


# ---------------------------------------------------------------------------------------------------- training data


def make_training_set(root: Path, count: int = 6, seed: int = 0) -> Dict[str, Path]:
    """``count`` tone utterances (0.5 to 1 s) with 2 to 4 syllable transcripts, a manifest and a vocabulary CSV."""
    rng = np.random.default_rng(seed)
    vocab = Vocabulary(TOKENS)
    entries = []
    for index in range(count):
        text = "".join(rng.choice(SYLLABLES, size=2 + index % 3))
        wav = save_audio(root / "wav" / f"utt{index}.wav", tone(0.5 + 0.1 * index, seed=index), SAMPLE_RATE)
        entries.append(ManifestEntry(wav, text, tuple(vocab.encode(text))))
    manifest = write_manifest(root / "train.tsv", entries)
    vocab_csv = vocab.to_csv(root / "vocab.csv")
    return {"manifest": manifest, "vocab": vocab_csv}


def tiny_train_config(output_dir: Path, **overrides) -> TrainConfig:
    """A ``TrainConfig`` for the tiny models: CPU, one thread, no workers, no augmentation, seeded."""
    values = dict(
        output_dir=str(output_dir),
        batch_size=2,
        num_epochs=2,
        num_workers=0,
        spec_augment=False,
        warmup_steps=2,
        log_every=1000,
        checkpoint_every=0,
        num_threads=1,
        seed=3,
        device="cpu",
    )
    values.update(overrides)
    return TrainConfig(**values)


def tiny_model_record() -> Dict[str, int]:
    """The architecture record of :func:`new_tiny_model` as checkpoints store it."""
    return {"input_dim": FEATURES.feature_dim, "num_classes": len(TOKENS), **MODEL_CONFIG}


def new_tiny_model() -> DeepSpeech2:
    """A fresh, seeded tiny DeepSpeech2 to train."""
    torch.manual_seed(0)
    return build_deepspeech2(FEATURES.feature_dim, len(TOKENS), MODEL_CONFIG)


# ---------------------------------------------------------------------------------------------------- processes


def python_env() -> Dict[str, str]:
    """Environment of child interpreters: the repository importable, one thread per library."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = "1"
    return env


def write_script(path: Path, source: str) -> Path:
    """Write a child script (dedented); it starts with ``torch.set_num_threads(1)``."""
    header = "import torch\ntorch.set_num_threads(1)\n"
    path.write_text(header + textwrap.dedent(source), encoding="utf-8")
    return path


def start_python(script: Path, *args: str, cwd: Optional[Path] = None) -> subprocess.Popen:
    """Start ``python script args`` at the lowest CPU priority, output captured."""
    command = ["nice", "-n", "19", sys.executable, str(script), *args]
    return subprocess.Popen(
        command, cwd=cwd or script.parent, env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def run_python(script: Path, *args: str, timeout: float = 120.0) -> str:
    """Run a child script to completion; fail the test with its output when it fails."""
    process = start_python(script, *args)
    output, _ = process.communicate(timeout=timeout)
    text = output.decode("utf-8", "replace")
    assert process.returncode == 0, f"{script.name} exited with {process.returncode}:\n{text}"
    return text


def wait_for(condition: Callable[[], bool], timeout: float, what: str, process: Optional[subprocess.Popen] = None):
    """Poll ``condition`` every 5 ms; fail when it is not met in time or ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            output = process.stdout.read().decode("utf-8", "replace") if process.stdout else ""
            pytest.fail(f"child exited ({process.returncode}) before {what}:\n{output}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def fork_loop(body: Callable[[int], None]) -> int:
    """Fork a child that calls ``body(i)`` for i = 0, 1, 2, ... until it is killed; returns its pid.

    Forking (instead of a fresh interpreter) keeps kill-at-a-random-moment trials cheap: torch is already imported.
    The child never returns into pytest.
    """
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            torch.set_num_threads(1)
            iteration = 0
            while True:
                body(iteration)
                iteration += 1
        except BaseException:  # the child must never unwind into the test runner
            code = 1
        finally:
            os._exit(code)
    return pid


def fork_run(body: Callable[[], None]) -> int:
    """Fork a child that calls ``body()`` once and exits 0 (1 on any error); returns its pid."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            torch.set_num_threads(1)
            body()
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    return pid


def kill_hard(pid: int) -> None:
    """SIGKILL ``pid`` (a child this test started) and reap it."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)


def wait_child(pid: int, timeout: float = 60.0) -> int:
    """Reap a forked child; returns its exit code (fails the test on timeout, after killing it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    kill_hard(pid)
    pytest.fail(f"child {pid} did not finish in {timeout} s")
