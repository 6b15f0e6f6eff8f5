"""Service load benchmark: K concurrent clients, each a different user with an adapter, against a real
``kospeech-serve`` process, with dynamic batching (the default settings) and with batching off
(``server.batch_max_size=1``).

    python benchmarks/service_load.py            # K = 1, 4, 16, 64; 30 s per mode and K (about 5 minutes)
    python benchmarks/service_load.py --quick    # K = 1, 16; 12 s per mode and K (about 2 minutes)

(plus, on the first run, about 20 s to synthesize the voices and a few minutes to train their adapters)

Setup, before anything is measured: the built-in users user01..user04 of the demo corpus (the shipped base's corpus;
their speech is synthesized into ``--users-dir`` once) each get an ``encoder`` adapter trained by the service's own
job runner (:class:`~kospeech.service.training.AdapterJobRunner`: the library's ``AdapterTrainer`` with the type's
recipe) on their first 40 enrollment utterances. Then 64 service users ``load00``..``load63`` are made, each given
its own copy of one of those adapters as its active version (:func:`kospeech.service.versions.record_version`, how an
adapter trained elsewhere is imported), so every client is a distinct user with a distinct adapter file and module.

Measurement: two ``kospeech-serve`` processes on the same data folder (SQLite; one torch thread each, no in-process
worker, loopback ports), one with the default batching settings and one with ``server.batch_max_size=1``, measured
one at a time in alternating rounds (so that a change of the machine's load hits both alike). For each K, K clients
(asyncio tasks sharing one ``httpx.AsyncClient``) send their user's test clips one after another (``POST
/v1/audio/transcriptions``, ``user=loadNN``, ``response_format=verbose_json``); once every client has had an answer
(its adapter is loaded: the figures are warm-cache, in steady state) the answers completed over the measured time are
counted. Requests/s is their number per second; latency is per request (p50, p95); the mean batch size comes from
the server's ``/metrics``; the server's CPU time per request (user + system, from ``/proc``, over the same time) is
the work a request costs whatever else runs on the machine (the clients' own CPU time is reported too: on two cores
they compete with the server). Every answer must be 200 and name the user's adapter
version. The trained adapters are kept next to the voices' speech and reused by later runs (``--retrain``).

Results go to ``runs/benchmarks/service_load.json`` (the servers' logs to ``runs/benchmarks/service_load_logs/``);
the last line printed is ``ratio: X.XX`` = requests/s at K=16 with batching / without.
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import httpx
import soundfile
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_utils import VOICES, check_base, machine, print_table, voice_sets, write_results  # noqa: E402

from kospeech.checkpoint import load_checkpoint  # noqa: E402
from kospeech.cli.common import positive_int  # noqa: E402
from kospeech.data.manifest import read_manifest  # noqa: E402
from kospeech.fileio import atomic_write_json  # noqa: E402
from kospeech.service import load_settings  # noqa: E402
from kospeech.service.db import create_db_engine, migrate, session_factory, session_scope  # noqa: E402
from kospeech.service.keys import create_key  # noqa: E402
from kospeech.service.models import Tenant, User, new_id  # noqa: E402
from kospeech.service.storage import Storage  # noqa: E402
from kospeech.service.training import AdapterJobRunner  # noqa: E402
from kospeech.service.versions import record_version  # noqa: E402

MAX_USERS = 64
MODES = {"batched": [], "unbatched": ["server.batch_max_size=1"]}


def prepare_users(args: argparse.Namespace, data_dir: Path) -> Dict[str, Any]:
    """Train the voices' adapters, make the service users with their copies; returns what the clients need."""
    base = load_checkpoint(args.base)
    sets = voice_sets(args.users_dir, base.vocab)
    settings = load_settings([f"server.data_dir={data_dir}", f"server.base_model_path={args.base}"])
    engine = create_db_engine(settings.database())
    migrate(engine)
    sessions = session_factory(engine)
    storage = Storage(settings.data_dir)
    runner = AdapterJobRunner.from_settings(settings)
    trained: Dict[str, Any] = {}
    cache = Path(args.users_dir) / "adapters"
    with tempfile.TemporaryDirectory(prefix="kospeech_service_load_") as scratch:
        for voice in VOICES:
            kept, record = cache / f"{voice}.pt", cache / f"{voice}.json"
            if args.retrain or not record.is_file() or json.loads(record.read_text())["base"] != args.base:
                started = time.perf_counter()
                entries = read_manifest(sets[voice]["enroll"], base.vocab)
                utterances = [(entry.audio_path, entry.transcript) for entry in entries]
                outcome = runner.train(Path(scratch) / voice, voice, "encoder", utterances, lambda _: True)  # go on
                summary = {
                    "base": args.base,
                    "seconds": round(time.perf_counter() - started, 1),
                    "held_out_cer": [outcome.cer_before, outcome.cer_after],
                    "rejected": outcome.rejected,
                }
                if not outcome.rejected:
                    storage.copy_atomic(outcome.adapter_file, kept)
                atomic_write_json(record, summary)
            summary = json.loads(record.read_text())
            before, after = summary["held_out_cer"]
            print(
                f"{voice}'s encoder adapter (trained in {summary['seconds']:.0f} s): held-out CER {before:.3f} -> "
                f"{after:.3f}{' (rejected: not used)' if summary['rejected'] else ''}",
                flush=True,
            )
            if not summary["rejected"]:
                trained[voice] = {"file": kept, "seconds": summary["seconds"], "cer": summary["held_out_cer"]}
    if not trained:
        sys.exit("error: every adapter was rejected; nothing to serve")
    voices = sorted(trained)
    with session_scope(sessions) as session:
        key = create_key(session, "load")
        tenant = session.scalar(select(Tenant).where(Tenant.name == "load"))
        users = []
        for index in range(MAX_USERS):
            voice = voices[index % len(voices)]
            user = User(tenant_id=tenant.id, user_id=f"load{index:02d}")
            session.add(user)
            session.flush()
            record_version(session, storage, user, trained[voice]["file"], new_id(), "encoder", False)
            test = read_manifest(sets[voice]["test"], base.vocab)
            clips = [entry.audio_path.read_bytes() for entry in test]
            durations = [soundfile.info(str(entry.audio_path)).duration for entry in test]
            users.append({"user": user.user_id, "voice": voice, "clips": clips, "clip_seconds": durations})
    engine.dispose()
    return {"key": key, "users": users, "adapters": {voice: trained[voice] for voice in voices}}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(args: argparse.Namespace, data_dir: Path, extra: List[str], log: Path) -> Tuple[subprocess.Popen, str]:
    """A kospeech-serve process and its URL, once ``/healthz`` answers."""
    script = Path(sys.executable).parent / "kospeech-serve"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "kospeech", "serve"]
    port = free_port()
    settings = [
        f"server.port={port}",
        f"server.data_dir={data_dir}",
        f"server.base_model_path={args.base}",
        f"server.torch_threads={args.threads}",
        "server.in_process_worker=false",
        "server.log_level=WARNING",
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    process = subprocess.Popen([*command, *settings], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"error: kospeech-serve exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    process.kill()
    sys.exit("error: kospeech-serve did not start in 180 s")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_clients(url: str, key: str, users: List[Dict[str, Any]], seconds: float, pid: int) -> Dict[str, Any]:
    """K clients (one per user) sending transcriptions back to back, measured in steady state.

    The clients run until every one of them has had an answer (adapters loaded, the pipeline full); then the
    completed requests, their latencies, the server's CPU time and its batch counters are counted over ``seconds``;
    requests still in flight at the end are left out, and so is the CPU time spent after it.
    """
    limits = httpx.Limits(max_connections=len(users) + 4, max_keepalive_connections=len(users) + 4)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600, limits=limits) as client:
        finished: List[Tuple[float, float]] = []  # (end time, latency)
        answered = set()
        stop = asyncio.Event()

        async def client_loop(user: Dict[str, Any]) -> None:
            index = 0
            while not stop.is_set():
                started = time.perf_counter()
                response = await client.post(
                    "/v1/audio/transcriptions",
                    files={"file": ("clip.wav", user["clips"][index % len(user["clips"])], "audio/wav")},
                    data={"user": user["user"], "response_format": "verbose_json"},
                )
                ended = time.perf_counter()
                if response.status_code != 200 or response.json()["adapter"] is None:
                    raise RuntimeError(f"{user['user']}: {response.status_code} {response.text[:300]}")
                finished.append((ended, ended - started))
                answered.add(user["user"])
                index += 1

        async def snapshot() -> Tuple[float, float, List[float], float]:
            batches = [0.0, 0.0]
            for line in (await client.get("/metrics")).text.splitlines():
                name, _, value = line.partition(" ")
                if name == "kospeech_batch_size_requests_sum":
                    batches[0] = float(value)
                elif name == "kospeech_batch_size_requests_count":
                    batches[1] = float(value)
            return time.perf_counter(), cpu_seconds(pid), batches, time.process_time()

        loops = [asyncio.create_task(client_loop(user)) for user in users]
        while len(answered) < len(users):
            failed = [loop for loop in loops if loop.done()]
            if failed:
                await asyncio.gather(*failed)  # raises the client's error
            await asyncio.sleep(0.05)
        first = await snapshot()
        await asyncio.sleep(seconds)
        last = await snapshot()
        stop.set()
        await asyncio.gather(*loops)
    latencies = [latency for ended, latency in finished if first[0] <= ended <= last[0]]
    return {
        "completed": len(latencies),
        "seconds": last[0] - first[0],
        "latencies": latencies,
        "cpu_seconds": last[1] - first[1],
        "client_cpu_seconds": last[3] - first[3],
        "batches": [last[2][0] - first[2][0], last[2][1] - first[2][1]],
    }


def percentile(values: List[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="K = 1 and 16, 12 s per point")
    parser.add_argument("--base", default="pretrained/ds2_synthetic.pt", help="base checkpoint")
    parser.add_argument("--users-dir", default="data/service_load_users", help="the voices' speech (built once)")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads of the server process")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per mode and K (30; --quick 12)")
    parser.add_argument("--rounds", type=positive_int, default=3, help="alternating rounds the seconds are split into")
    parser.add_argument("--retrain", action="store_true", help="train the voices' adapters again")
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        nargs="+",
        help=f"the values of K, up to {MAX_USERS} (default 1 4 16 64; --quick 1 16)",
    )
    parser.add_argument(
        "--setting", action="append", default=[], help="a server.KEY=VALUE for both servers (repeatable)"
    )
    parser.add_argument("--output", default="runs/benchmarks/service_load.json", help="results JSON")
    args = parser.parse_args()
    check_base(args.base)
    if args.concurrency and max(args.concurrency) > MAX_USERS:  # there are MAX_USERS clients: a larger K runs fewer
        parser.error(f"argument --concurrency: at most {MAX_USERS}, got {max(args.concurrency)}")
    concurrency = args.concurrency or ([1, 16] if args.quick else [1, 4, 16, 64])
    seconds = args.seconds or (12.0 if args.quick else 30.0)
    args.base = str(Path(args.base).resolve())
    load_at_start = round(os.getloadavg()[0], 2)
    rows: Dict[str, Dict[int, Dict[str, Any]]] = {mode: {} for mode in MODES}
    logs = Path(args.output).with_name(Path(args.output).stem + "_logs")  # the servers' logs, kept
    logs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kospeech_service_load_data_") as tmp:
        data_dir = Path(tmp)
        setup = prepare_users(args, data_dir)
        servers = {}
        try:
            for mode, extra in MODES.items():
                servers[mode] = start_server(args, data_dir, [*extra, *args.setting], logs / f"server_{mode}.log")
            for k in concurrency:
                totals = {
                    mode: {
                        "completed": 0,
                        "seconds": 0.0,
                        "cpu_seconds": 0.0,
                        "client_cpu_seconds": 0.0,
                        "latencies": [],
                        "batches": [0.0, 0.0],
                    }
                    for mode in MODES
                }
                for round_index in range(args.rounds):
                    order = list(MODES) if round_index % 2 == 0 else list(reversed(MODES))
                    for mode in order:  # alternating, so that a change of the machine's load hits both alike
                        process, url = servers[mode]
                        users = setup["users"][:k]
                        measured = asyncio.run(
                            run_clients(url, setup["key"], users, seconds / args.rounds, process.pid)
                        )
                        total = totals[mode]
                        for name in ("completed", "seconds", "cpu_seconds", "client_cpu_seconds"):
                            total[name] += measured[name]
                        total["latencies"] += measured["latencies"]
                        total["batches"] = [total["batches"][i] + measured["batches"][i] for i in (0, 1)]
                for mode, total in totals.items():
                    latencies = total["latencies"]
                    rows[mode][k] = {
                        "requests": total["completed"],
                        "requests_per_second": round(total["completed"] / total["seconds"], 3),
                        "p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
                        "p95_ms": round(1000 * percentile(latencies, 0.95), 1) if latencies else None,
                        "mean_batch_size": round(total["batches"][0] / max(1.0, total["batches"][1]), 2),
                        "server_cpu_ms_per_request": round(1000 * total["cpu_seconds"] / max(1, total["completed"]), 1),
                        "client_cpu_ms_per_request": round(
                            1000 * total["client_cpu_seconds"] / max(1, total["completed"]), 1
                        ),
                    }
                    print(f"{mode:<10} K={k:<3} {json.dumps(rows[mode][k])}", flush=True)
        finally:
            for process, _ in servers.values():
                process.send_signal(signal.SIGTERM)
                process.wait(60)
    ratio_k = 16 if 16 in concurrency else concurrency[-1]
    ratio = rows["batched"][ratio_k]["requests_per_second"] / rows["unbatched"][ratio_k]["requests_per_second"]
    clip_seconds = [value for user in setup["users"][: len(setup["adapters"])] for value in user["clip_seconds"]]
    batching = load_settings(args.setting)  # the batched server's settings: the defaults under --setting
    results = {
        "mode": "quick" if args.quick else "full",
        # torch_threads there is this (client) process'; the servers' is server.torch_threads
        "machine": machine(),
        "load_average_1min_at_start": load_at_start,
        "server": {
            "torch_threads": args.threads,
            "batched": {
                name: getattr(batching, name) for name in ("batch_max_size", "batch_max_wait_ms", "batch_forward_size")
            },
            "unbatched": "server.batch_max_size=1",
            "both": args.setting,
            "database": "SQLite",
        },
        "rounds": args.rounds,
        "base": args.base,
        "adapters": {
            voice: {"seconds": item["seconds"], "held_out_cer": item["cer"]}
            for voice, item in setup["adapters"].items()
        },
        "users": MAX_USERS,
        "clip_seconds_mean": round(statistics.mean(clip_seconds), 2),
        "seconds_per_point": seconds,
        "results": {mode: {str(k): row for k, row in by_k.items()} for mode, by_k in rows.items()},
        "ratio_k": ratio_k,
        "ratio": round(ratio, 3),
    }
    output = write_results(args.output, results, args)
    print()
    print(
        f"service load ({results['mode']}, CPU, server with {args.threads} torch thread(s), "
        f"load average {results['machine']['load_average_1min']} at the end)"
    )
    print(f"{MAX_USERS} users, each with its own encoder adapter; clips of {results['clip_seconds_mean']} s on average")
    header = ["mode", "K", "requests", "req/s", "p50 ms", "p95 ms", "mean batch", "server CPU ms/req", "client CPU"]
    keys = ["requests", "requests_per_second", "p50_ms", "p95_ms", "mean_batch_size", "server_cpu_ms_per_request"]
    keys.append("client_cpu_ms_per_request")
    table = [[mode, k, *(row[key] for key in keys)] for mode, by_k in rows.items() for k, row in by_k.items()]
    print_table(header, table)
    print(f"results: {output}")
    print(f"(requests/s at K={ratio_k}, batched / unbatched)")
    print(f"ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
