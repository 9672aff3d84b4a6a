"""Teacher throughput: how close the harness gets to the ideal C / latency requests per second.

A local OpenAI-compatible server (tests/fakes/provider.py --asyncio, in its own process so its CPU is not counted)
answers every request after a fixed latency. For each concurrency C the harness runs a full teacher stage's request path
against it: the official async SDK client, the retry/rate-limit layer, the request cache (SQLite) and the fsynced
journal, parsing, progress. Achieved requests/s is reported as a fraction of C / latency, with the harness's own
CPU time per request (user + system of this process).

    python bench/teacher_throughput.py                      # C = 16, 64, 256; latency 0.5 s
    python bench/teacher_throughput.py --concurrency 256 --rounds 10 --backend anthropic

Not a test: timings depend on the machine and on what else runs on it (the load average is printed).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402

from harness.llm import ChatRequest, SendPolicy  # noqa: E402
from harness.llm.remote import AnthropicBackend, OpenAICompatBackend  # noqa: E402
from harness.pricing import FREE  # noqa: E402
from harness.stages.base import StageContext  # noqa: E402
from harness.stages.generation import GenerationJob, run_generation  # noqa: E402
from harness.store import RunStore  # noqa: E402


def start_server(latency: float, kind: str = "asyncio") -> tuple[subprocess.Popen, str]:
    flags = ["--asyncio"] if kind == "asyncio" else ["--simple"]
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.provider", "--latency", str(latency), *flags],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline().split()[1])
    return proc, f"http://127.0.0.1:{port}"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of another process (the server), from /proc; 0 where there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_once(url: str, backend_kind: str, concurrency: int, n: int, tag: str) -> dict:
    policy = SendPolicy(max_concurrency=concurrency, max_retries=2, retry_backoff_s=0.1, timeout_s=30)
    os.environ.setdefault("CGD_BENCH_KEY", "bench-key")
    if backend_kind == "anthropic":
        backend = AnthropicBackend("bench-model", base_url=url, api_key_env="CGD_BENCH_KEY", policy=policy)
    else:
        backend = OpenAICompatBackend("bench-model", base_url=f"{url}/v1", api_key_env=None, policy=policy)
    records = [{"id": f"{tag}-{i}", "prompt": f"Question {tag} number {i}: what is {i} + {i}?"} for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp))
        ctx = StageContext("critique", {}, {}, store.stage("critique", "0" * 64), store, Console(file=io.StringIO()),
                           None)
        job = GenerationJob(backend=backend, backend_name=backend_kind, price=FREE,
                            build=lambda rec: ChatRequest.build([{"role": "user", "content": rec["prompt"]}],
                                                                max_tokens=16),
                            parse=lambda rec, result: {"answer": result.text})
        cpu0, t0 = cpu_seconds(), time.monotonic()
        out, stats = run_generation(ctx, records, job, "bench")
        wall, cpu = time.monotonic() - t0, cpu_seconds() - cpu0
        store.close()
    assert stats["ok"] == n, stats
    return {"wall_s": wall, "cpu_s": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=8, help="requests per run = rounds x C")
    parser.add_argument("--backend", choices=["openai_compat", "anthropic"], default="openai_compat")
    parser.add_argument("--server", choices=["asyncio", "threads"], default="asyncio",
                        help="the fake server: lean aiohttp, or the stdlib threaded one the tests use")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    server, url = start_server(args.latency, args.server)
    rows = []
    try:
        run_once(url, args.backend, 8, 16, "warmup")  # imports, first connections
        for c in args.concurrency:
            n = c * args.rounds
            load = os.getloadavg()[0]
            server_cpu = process_cpu_seconds(server.pid)
            r = run_once(url, args.backend, c, n, f"c{c}")
            server_cpu = process_cpu_seconds(server.pid) - server_cpu
            ideal = c / args.latency
            achieved = n / r["wall_s"]
            rows.append({"concurrency": c, "requests": n, "wall_s": round(r["wall_s"], 2),
                         "req_per_s": round(achieved, 1), "ideal_req_per_s": ideal,
                         "fraction_of_ideal": round(achieved / ideal, 3),
                         "harness_cpu_ms_per_request": round(1000 * r["cpu_s"] / n, 2),
                         "server_cpu_ms_per_request": round(1000 * server_cpu / n, 2),
                         "harness_cores_busy": round(r["cpu_s"] / r["wall_s"], 2), "load_avg_1m": round(load, 2)})
    finally:
        server.terminate()
        server.wait()
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    from harness.llm.remote import http_transport

    print(f"backend {args.backend} over {http_transport()}, {args.server} server, latency {args.latency}s, "
          f"{args.rounds} x C requests per run, {os.cpu_count()} CPUs")
    print(f"{'C':>5} {'requests':>9} {'wall s':>7} {'req/s':>7} {'ideal':>6} {'fraction':>9} {'harness CPU':>12} "
          f"{'server CPU':>11} {'load':>5}")
    for r in rows:
        print(f"{r['concurrency']:>5} {r['requests']:>9} {r['wall_s']:>7} {r['req_per_s']:>7} "
              f"{r['ideal_req_per_s']:>6.0f} {r['fraction_of_ideal']:>9} {r['harness_cpu_ms_per_request']:>9} ms "
              f"{r['server_cpu_ms_per_request']:>8} ms {r['load_avg_1m']:>5}")
    # The fraction includes the first round's connection set-up; more rounds amortize it.


if __name__ == "__main__":
    main()
