"""Real service processes for the end-to-end tests: ``kospeech-keys``, ``kospeech-serve`` and ``kospeech-worker`` as
subprocesses on loopback, one torch thread each, their logs in files the failure messages quote."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import httpx

SCRIPTS = Path(sys.executable).parent
ENV = {key: value for key, value in os.environ.items() if key != "TQDM_DISABLE"}  # the service sets it itself
ENV.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
START_SECONDS = 180.0


def command(name: str) -> List[str]:
    """The console script ``kospeech-<name>`` (``python -m kospeech <name>`` where it is not installed)."""
    script = SCRIPTS / f"kospeech-{name}"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "kospeech", name]


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def create_key(settings: Sequence[str], tenant: str, cwd: Path, *options: str) -> str:
    """``kospeech-keys create --tenant TENANT [options] [settings]``; the key is the last word it prints."""
    done = subprocess.run(
        [*command("keys"), "create", "--tenant", tenant, *options, *settings],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-1]


class ServiceProcess:
    """One ``kospeech-serve`` or ``kospeech-worker`` process; its output goes to ``log``.

    Args:
        name: ``serve`` or ``worker``.
        settings: ``server.KEY=VALUE`` arguments.
        log: the file that receives stdout and stderr.
        cwd: the working directory.
    """

    def __init__(self, name: str, settings: Sequence[str], log: Path, cwd: Path) -> None:
        self.name = name
        self.log = log
        self._log_file = open(log, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [*command(name), "server.torch_threads=1", *settings],
            cwd=cwd,
            env=ENV,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def output(self, last: int = 4000) -> str:
        """The end of the process's log."""
        return self.log.read_text(encoding="utf-8", errors="replace")[-last:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> Optional[int]:
        """Send ``sig`` and wait for the exit (killed after ``timeout``); returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()
        return self.process.returncode


class Server(ServiceProcess):
    """A ``kospeech-serve`` process on a free loopback port, ready once ``/healthz`` answers."""

    def __init__(self, settings: Sequence[str], log: Path, cwd: Path) -> None:
        self.port = free_port()
        super().__init__("serve", [*settings, f"server.port={self.port}"], log, cwd)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + START_SECONDS
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"kospeech-serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"kospeech-serve did not answer in {START_SECONDS:g} s:\n{self.output()}")
            time.sleep(0.25)

    def client(self, key: str, timeout: float = 120.0) -> httpx.Client:
        """An HTTP client of this server presenting ``key``."""
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout)


def poll_job(client: httpx.Client, job_id: str, timeout: float) -> tuple:
    """Poll ``GET /v1/jobs/{job_id}`` until it ends; returns (final answer, the (status, progress) seen)."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        seen.append((job["status"], job["progress"]))
        if job["status"] in ("succeeded", "failed"):
            return job, seen
        time.sleep(1.0)
    raise AssertionError(f"job {job_id} did not finish in {timeout:g} s: {seen[-5:]}")


def upload_utterances(client: httpx.Client, user_id: str, entries) -> List[Dict[str, object]]:
    """Upload every manifest entry as one of the user's enrollment utterances; returns the answers."""
    answers = []
    for entry in entries:
        response = client.post(
            f"/v1/users/{user_id}/utterances",
            files={"file": (entry.audio_path.name, entry.audio_path.read_bytes(), "audio/wav")},
            data={"text": entry.transcript},
        )
        assert response.status_code == 201, response.text
        answers.append(response.json())
    return answers
