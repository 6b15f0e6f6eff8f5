"""Every fenced shell command and Python snippet of the user-facing docs runs as written, or says why it does not.

The documents are read, their ``bash`` blocks split into commands (backslash continuations joined, comments
dropped) and their ``python`` blocks taken whole. Each command and snippet must appear in :data:`RUN` (executed in
document order in a sandbox that holds what ``make demo`` leaves: the shipped base, the built-in users' speech in
``data/demo_users`` and their adapters in ``runs/demo/adapters``) or in :data:`NOT_RUN` with the reason. A new
snippet that is in neither fails this test, and so does a snippet that fails.

Small settings: Hydra commands get :data:`RUN`'s extra overrides appended (one epoch, the tiny corpus); Python
snippets get its text substitutions, each of which must still match the document. The README's service quick start
(:data:`SERVICE_SESSION`) runs as one shell session: key, server in the background, transcription, on a free port.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "ADAPTER_README.md", "benchmarks/README.md")
SMALL_TRAINING = ("train.num_epochs=1", "train.num_workers=0", "train.num_threads=1", "train.device=cpu")
TINY_CORPUS = ("data.corpus_dir=data/corpus_tiny", "data.corpus_preset=tiny")


@dataclass(frozen=True)
class Snippet:
    document: str
    line: int
    language: str
    text: str

    @property
    def key(self) -> str:
        """The first line, which names the snippet in :data:`RUN` / :data:`NOT_RUN`."""
        return self.text.strip().splitlines()[0].strip()


def snippets() -> List[Snippet]:
    """Every bash command and python block of :data:`DOCUMENTS`, in document order."""
    found = []
    for document in DOCUMENTS:
        lines = (ROOT / document).read_text(encoding="utf-8").splitlines()
        index = 0
        while index < len(lines):
            opening = re.fullmatch(r"```(bash|python)\s*", lines[index])
            if not opening:
                index += 1
                continue
            start = index + 1
            index = start
            while not lines[index].startswith("```"):
                index += 1
            body = lines[start:index]
            if opening.group(1) == "python":
                found.append(Snippet(document, start + 1, "python", "\n".join(body) + "\n"))
            else:
                found.extend(_commands(document, start, body))
            index += 1
    return found


def _commands(document: str, start: int, body: List[str]) -> List[Snippet]:
    commands, pending, first = [], "", start
    for number, line in enumerate(body, start=start + 1):
        if not pending:
            first = number
        text = re.sub(r"(^|\s+)#\s.*$", "", line).strip()  # a comment line, or a comment after the command
        if text.endswith("\\"):
            pending += text[:-1].rstrip() + " "
            continue
        command = (pending + text).strip()
        pending = ""
        if command:
            commands.append(Snippet(document, first, "bash", command))
    return commands


SERVICE_SESSION = "the service quick start"
"""RUN value of the README's service commands: they run together, in document order, as one bash script in which
``8000`` becomes a free port and the background server is stopped at the end; the transcription must come back."""

SERVICE_CLIP_TRANSCRIPT = "상주로 가 주세요"
"""What the base model hears in tests/fixtures/recordings/clip0.wav (the README quotes it)."""

# key -> extra command-line arguments (bash), {old: new} substitutions (python) or SERVICE_SESSION
RUN: Dict[str, object] = {
    "from kospeech.vocabs import Vocabulary": {},
    "python bin/make_corpus.py preset=tiny out_dir=data/corpus_tiny seed=0": (),
    "python bin/main.py --config-name=train train=ds2_train": ("model=ds2_tiny", *TINY_CORPUS, *SMALL_TRAINING),
    "python bin/main.py --config-name=train train=ds2_train audio=fbank40 data.unit=grapheme": (
        "model=ds2_tiny",
        *TINY_CORPUS,
        *SMALL_TRAINING,
        "train.output_dir=runs/ds2_train_grapheme",
    ),
    "python bin/eval.py checkpoint_path=pretrained/ds2_synthetic.pt adapter_path=runs/demo/adapters/user01_adapter.pt "
    "manifest_path=data/demo_users/users/user01/test.tsv": (),
    "python bin/eval.py checkpoint_path=pretrained/ds2_synthetic.pt adapter_dir=runs/demo/adapters "
    "manifest_path=data/demo_users/users/user01/test.tsv": (),
    "python bin/main.py --config-name=train train=adapter_train train.base_model_path=pretrained/ds2_synthetic.pt "
    "train.adapter_name=user_john train.adapter_save_dir=./adapters": (
        "data.train_manifest=data/demo_users/users/user01/enroll.tsv",
        *SMALL_TRAINING,
    ),
    "python bin/main.py --config-name=train train=adapter_train train.base_model_path=pretrained/ds2_synthetic.pt "
    "train.adapter_name=user01 train.adapter_save_dir=./adapters train.adapter_type=encoder": (
        "data.train_manifest=data/demo_users/users/user01/enroll.tsv",
        *SMALL_TRAINING,
    ),
    "from kospeech.inference import Recognizer": {},
    "python bin/inference.py --checkpoint pretrained/ds2_synthetic.pt --adapter-dir runs/demo/adapters --user user01 "
    "clips/": (),
    "python bin/inference.py --checkpoint pretrained/ds2_synthetic.pt --adapter-dir runs/demo/adapters --user-map "
    "users.tsv --format jsonl --timestamps clips/": (),
    "python bin/inference.py --checkpoint pretrained/ds2_synthetic.pt --format srt meeting.wav > meeting.srt": (),
    "python bin/inference.py --checkpoint pretrained/ds2_synthetic.pt --format vtt --output-dir subtitles/ "
    "recordings/": (),
    "import kospeech": {},
    "import logging": {"num_epochs=8": "num_epochs=1"},
    "KEY=$(kospeech-keys create --tenant acme | awk '{print $NF}')": SERVICE_SESSION,
    "kospeech-serve server.port=8000 server.data_dir=./service_data &": SERVICE_SESSION,
    "curl -s --retry 30 --retry-connrefused --retry-delay 1 http://127.0.0.1:8000/v1/audio/transcriptions "
    '-H "Authorization: Bearer $KEY" -F file=@tests/fixtures/recordings/clip0.wav -F response_format=verbose_json': (
        SERVICE_SESSION
    ),
}

NOT_RUN: Dict[str, str] = {
    "make demo": "`make test` is this suite; `make demo`'s job (kospeech.demo.run_demo) is tested by tests/test_demo.py "
    "on a small scale, the whole demo takes minutes",
    "make test": "this suite",
    "python3.11 -m venv .venv && .venv/bin/pip install -r requirements-dev.txt -c constraints.txt && .venv/bin/pip install -e .": (
        "installs packages; CI's fresh clone installs exactly this through `make test`"
    ),
    ". .venv/bin/activate": "changes the reader's shell; the suite runs in that environment already",
    "python bin/make_corpus.py preset=demo out_dir=data/corpus_demo seed=0": "minutes of synthesis; the same code "
    "builds the tiny preset above",
    "python bin/make_corpus.py preset=bench out_dir=data/corpus_bench seed=0": "a larger corpus for benchmarks; the "
    "same code builds the tiny preset above",
    "python bin/preprocess_ksponspeech.py /path/to/KsponSpeech out/ --mode phonetic --valid-ratio 0.01": "needs the "
    "KsponSpeech corpus, which is not shipped; tests/data/test_ksponspeech.py runs the same CLI on fixture files",
    "python bin/preprocess_ksponspeech.py /path/to/KsponSpeech data/kspon --valid-ratio 0.01": "needs the "
    "KsponSpeech corpus; tests/data/test_kspon_recipe.py runs the whole recipe on a fixture tree in its layout",
    "python bin/main.py --config-name=train train=ds2_train data=kspon model=ds2 model.num_rnn_layers=3 "
    "model.rnn_hidden_dim=1024 model.dropout_p=0.3 train.batch_size=32 train.num_epochs=70 train.max_minutes=null "
    "train.init_lr=1e-6 train.peak_lr=1e-4 train.final_lr=1e-6 train.warmup_steps=400 train.weight_decay=1e-5 "
    "train.output_dir=runs/ds2_kspon": "days of training on the KsponSpeech corpus; tests/data/test_kspon_recipe.py "
    "runs it with a tiny model on a fixture tree",
    "python bin/eval.py checkpoint_path=runs/ds2_kspon/best.pt manifest_path=data/kspon/eval_clean.tsv": "needs "
    "the model trained above; tests/data/test_kspon_recipe.py runs it on a fixture tree",
    "python bin/eval.py checkpoint_path=runs/ds2_kspon/best.pt manifest_path=data/kspon/eval_other.tsv": "as above",
    "python bin/eval.py checkpoint_path=pretrained/ds2_synthetic.pt manifest_path=data/corpus_demo/base/test.tsv": (
        "needs the full demo corpus (minutes of synthesis); the two eval commands above run the same job"
    ),
    'AdapterManager.save_adapter(model, "adapters", "user01", vocab_fingerprint=..., feature_config=..., '
    "training_stats=...)": "an API summary with elided arguments (...); every call is exercised by "
    "tests/models/test_adapter_manager.py and tests/reliability/test_paths_and_versions.py",
    "python benchmarks/personalization.py --groups users --threads 1 --output-dir "
    "runs/benchmarks/personalization_users": "a benchmark of hours on two cores; `--quick` runs are the "
    "benchmarks' own smoke tests",
    "python benchmarks/personalization.py --groups challenge --threads 1 --output-dir "
    "runs/benchmarks/personalization_challenge": "as above",
    "python benchmarks/personalization.py --groups sealed --methods encoder --sizes 100 --threads 1 --output-dir "
    "runs/benchmarks/personalization_sealed": "a benchmark of about 30 minutes, run once for a final figure",
    "python benchmarks/adapter_training_speed.py --quick": "a measurement of about a minute, not behaviour; "
    "benchmarks are run by hand and print their ratio",
    "python benchmarks/multi_user_training.py --quick": "as above",
    "python benchmarks/data_loading.py --quick": "as above",
    "python benchmarks/memory.py --quick": "as above",
    "python benchmarks/profile_train_step.py --quick": "as above",
    'COMMON="server.database_url=postgresql+psycopg://asr@db:5432/asr server.queue=redis '
    'server.redis_url=redis://queue:6379/0 server.data_dir=/mnt/asr"': "names the database, queue and shared folder of a "
    "deployment on several machines; tests/service/test_scale_out.py runs the same commands on loopback (two "
    "servers, two workers, PostgreSQL, Redis, one data_dir)",
    "kospeech-keys create --tenant acme $COMMON": "as above",
    "kospeech-serve server.host=0.0.0.0 server.in_process_worker=false $COMMON": "as above",
    "kospeech-worker $COMMON": "as above",
    "python benchmarks/service_load.py --quick": "a measurement of a few minutes, not behaviour; benchmarks are run "
    "by hand and print their ratio",
    "python benchmarks/activation_safety.py --quick": "a measurement (about a minute), not behaviour; the rule it "
    "measures is tested in tests/trainer/test_personalization_rules.py",
    "python bin/train_adapters.py --users-dir data/demo_users/users --base-model pretrained/ds2_synthetic.pt "
    "--adapter-save-dir ./adapters --output-dir runs/train_adapters train.adapter_type=encoder": "trains every built-in "
    "user (minutes); tests/trainer/test_multi_user.py runs the same command on tiny users",
    "python bin/train_adapters.py --shard 0/4 --resume --users-dir /data/users --base-model base.pt --adapter-save-dir "
    "/data/adapters": "names a deployment's shared folders; tests/trainer/test_multi_user.py runs two shards as two "
    "processes of the same command",
    "torchrun --nnodes 2 --node-rank 0 --nproc-per-node 4 --master-addr host0 --master-port 29500 "
    "bin/train_adapters.py --resume --users-dir /data/users --base-model base.pt --adapter-save-dir /data/adapters": "needs "
    "two hosts; the shard it takes from RANK / WORLD_SIZE is tested in tests/trainer/test_multi_user.py",
    "kospeech-train-adapters --num-shards 8 --resume --users-dir /data/users --base-model /data/base.pt --adapter-save-dir "
    "/data/adapters --output-dir /data/runs": "runs inside a Kubernetes indexed job; the shard it takes from "
    "JOB_COMPLETION_INDEX is tested in tests/trainer/test_multi_user.py",
}


def test_every_snippet_is_run_or_says_why_not():
    keys = [snippet.key for snippet in snippets()]
    unlisted = [key for key in keys if key not in RUN and key not in NOT_RUN]
    assert not unlisted, f"snippets neither run nor listed as not run (add them to RUN or NOT_RUN): {unlisted}"
    stale = sorted((set(RUN) | set(NOT_RUN)) - set(keys))
    assert not stale, f"RUN / NOT_RUN name snippets the documents no longer have: {stale}"
    assert all(reason.strip() for reason in NOT_RUN.values())


def _sandbox(root: Path) -> Path:
    """A folder holding what `make demo` leaves, plus the audio files the inference examples name."""
    from kospeech.checkpoint import load_checkpoint
    from kospeech.data.synthetic import build_user_sets
    from kospeech.models import AdapterManager

    home = root / "home"
    home.mkdir()
    for name in ("bin", "pretrained", "benchmarks"):
        (home / name).symlink_to(ROOT / name)
    (home / "tests" / "fixtures").mkdir(parents=True)
    (home / "tests" / "fixtures" / "recordings").symlink_to(ROOT / "tests" / "fixtures" / "recordings")
    base = load_checkpoint(ROOT / "pretrained" / "ds2_synthetic.pt")
    users = build_user_sets(
        home / "data" / "demo_users", base.vocab, preset="demo", users=["user01", "user02"], max_enroll=6, max_test=2
    )
    for user in users:
        model = base.build_model()
        model.add_adapter("encoder", bottleneck_dim=8)
        AdapterManager.save_adapter(
            model,
            home / "runs" / "demo" / "adapters",
            user,
            vocab_fingerprint=base.vocab.fingerprint(),
            feature_config=base.feature_config.to_dict(),
        )
    wavs = sorted((home / "data" / "demo_users" / "users" / "user01").rglob("*.wav"))
    for name, source in zip(("hello.wav", "a.wav", "b.wav", "c.wav", "meeting.wav"), wavs * 2):
        shutil.copy(source, home / name)
    data, rate = sf.read(str(wavs[0]))
    sf.write(str(home / "c.flac"), data, rate, format="FLAC")
    for folder in ("clips", "recordings"):
        (home / folder).mkdir()
        for source in wavs[:2]:
            shutil.copy(source, home / folder / source.name)
    (home / "users.tsv").write_text(f"clips/{wavs[0].name}\tuser01\nclips/{wavs[1].name}\tuser02\n", encoding="utf-8")
    return home


PYTHON_PRELUDE = """\
import numpy as np
import torch
torch.set_num_threads(1)
waveform = (0.1 * np.sin(np.arange(44100) / 7.0)).astype(np.float32)   # the README's (waveform, 44100) input
"""


def _run(snippet: Snippet, how: object, home: Path, env: Dict[str, str]) -> Tuple[int, str]:
    if snippet.language == "python":
        text = snippet.text
        for old, new in dict(how).items():
            assert old in text, f"{snippet.document}:{snippet.line}: the substitution {old!r} no longer matches"
            text = text.replace(old, new)
        script = home / f"snippet_{Path(snippet.document).stem}_{snippet.line}.py"
        script.write_text(PYTHON_PRELUDE + text, encoding="utf-8")
        command = [sys.executable, str(script)]
        done = subprocess.run(command, cwd=home, env=env, capture_output=True, text=True, timeout=600)
    else:
        command = snippet.text.replace("python ", f"{sys.executable} ", 1) + "".join(f" {arg}" for arg in how)
        done = subprocess.run(command, shell=True, cwd=home, env=env, capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout + done.stderr


def _run_service_session(commands: List[Snippet], home: Path, env: Dict[str, str]) -> Tuple[int, str]:
    """The README's service commands as one bash script on a free port; the server is stopped when it ends."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    lines = ["set -e", "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT"]
    lines += [snippet.text.replace("8000", port) for snippet in commands]
    done = subprocess.run(
        ["bash", "-c", "\n".join(lines)], cwd=home, env=env, capture_output=True, text=True, timeout=600
    )
    if done.returncode == 0:
        answer = json.loads(done.stdout)
        assert answer["adapter"] is None and answer["text"] == SERVICE_CLIP_TRANSCRIPT, answer
    return done.returncode, done.stdout + done.stderr


@pytest.mark.slow
def test_every_listed_snippet_runs(tmp_path):
    home = _sandbox(tmp_path)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TQDM_DISABLE="1")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])  # the console scripts
    failures = []
    service = [snippet for snippet in snippets() if RUN.get(snippet.key) == SERVICE_SESSION]
    assert SERVICE_CLIP_TRANSCRIPT in (ROOT / "README.md").read_text(encoding="utf-8")
    for snippet in snippets():
        if snippet.key not in RUN:
            continue
        if RUN[snippet.key] == SERVICE_SESSION:
            if snippet is not service[0]:
                continue
            status, output = _run_service_session(service, home, env)
        else:
            status, output = _run(snippet, RUN[snippet.key], home, env)
        if status != 0:
            failures.append(f"{snippet.document}:{snippet.line}: {snippet.key}\n{output[-3000:]}")
    assert not failures, "\n\n".join(failures)
    assert (home / "adapters" / "user01_adapter.pt").is_file()  # the ADAPTER_README snippet saved its adapter
    assert (home / "meeting.srt").read_text(encoding="utf-8").startswith("1\n")
    assert np.isfinite(sf.read(str(home / "c.flac"))[0]).all()
