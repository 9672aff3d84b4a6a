"""Back-end `vllm`: the harness starts a server for the stage, waits for its health check, uses it through the
OpenAI-compatible client and stops it when the stage ends, fails or is interrupted.

vLLM itself needs a GPU (its PyPI wheels are CUDA-only), so the same launcher is tested with `transformers serve`
(a real OpenAI-compatible server on CPU, `flavor: transformers`) and with the fake provider standing in for
`vllm serve` (same command-line dialect: MODEL --host --port)."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.llm.server import ServerLauncher, ServerStartError, ServeSettings
from harness.paths import PROJECT_ROOT
from tests.fakes.provider import FakeProvider
from tests.helpers.data import write_prompts
from tests.helpers.tiny_model import build_random_tiny_model

CGD = [sys.executable, "-m", "harness.cli"]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_prompts(tmp_path_factory.mktemp("data") / "prompts.jsonl", 40, seed=3)


def recipe(folder: Path, data: Path, student: str, teacher: str, limit: int) -> Path:
    path = folder / "serve.yaml"
    path.write_text(f"""\
name: serve
data: {{path: {data}, prompt_field: question, answer_field: answer, id_field: id, limit: {limit}}}
{student}
{teacher}
critique: {{style: paper}}
variants: [base, cgd]
eval: {{suites: [tiny]}}
""")
    return path


def cgd(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CGD, *args], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"cgd {' '.join(args)} -> {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state


def served_port(log: Path) -> int:
    return int(re.search(r"--port (\d+)", log.read_text()).group(1))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_random_tiny_model(tmp_path_factory.mktemp("student") / "model")


def test_transformers_serve_through_the_launcher_runs_the_probe_stage(tmp_path, data, tiny_model):
    model = tiny_model
    student = (f"student: {{model: {model}, backend: vllm, max_concurrency: 4,\n"
               f"          generation: {{max_tokens: 12, n: 2, temperature: 0.8, seed: 1}},\n"
               f"          vllm: {{flavor: transformers, command: [{BIN / 'transformers'}, serve],\n"
               f"                 extra_args: [--device, cpu], startup_timeout_s: 240}}}}")
    teacher = "teacher: {provider: oracle, model: oracle}"
    runs = tmp_path / "runs"
    out = json.loads(cgd("run", str(recipe(tmp_path, data, student, teacher, 6)), "--until", "probe", "--runs-dir",
                         str(runs), "--json").stdout)
    assert out["stages"]["probe"]["status"] == "done" and out["stages"]["probe"]["records"] == 6
    [stage] = (runs / "stages").glob("probe-*")
    records = [json.loads(line) for line in (stage / "records.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["ok"] * 6
    assert all(len(r["drafts"]) == 2 for r in records)  # n=2, though transformers serve ignores `n`
    info = json.loads((stage / "done.json").read_text())["info"]
    assert info["sent"] == 6 and info["tokens"] > 0  # usage came back from the real server
    log = stage / "server.log"
    assert "transformers" in log.read_text().splitlines()[0] and "serve" in log.read_text().splitlines()[0]
    assert not port_open(served_port(log))  # stopped when the stage ended


def _fake_served_teacher(latency: float) -> str:
    return (f"teacher: {{provider: vllm, model: served-teacher, max_concurrency: 4, generation: {{max_tokens: 256}},\n"
            f"          vllm: {{command: [{sys.executable}, -m, tests.fakes.provider],"
            f" extra_args: [--latency, '{latency}'], startup_timeout_s: 60}}}}")


def test_the_served_teacher_is_stopped_on_ctrl_c_and_the_rerun_resumes(tmp_path, data):
    with FakeProvider(record_log=False) as student_server:
        student = (f"student: {{model: student, backend: openai_compat, base_url: '{student_server.url}/v1',"
                   f" generation: {{max_tokens: 64}}}}")
        path = recipe(tmp_path, data, student, _fake_served_teacher(0.1), 40)
        runs = tmp_path / "runs"
        proc = subprocess.Popen([*CGD, "run", str(path), "--until", "critique", "--runs-dir", str(runs)],
                                cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        journal = None
        while journal is None or not journal.exists() or len(journal.read_text().splitlines()) < 5:
            assert proc.poll() is None and time.monotonic() < deadline
            found = list((runs / "stages").glob("critique-*/journal.jsonl"))
            journal = found[0] if found else None
            time.sleep(0.05)
        log = journal.parent / "server.log"
        pid = int(re.search(r"PID (\d+)", log.read_text()).group(1))
        assert alive(pid)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends the harness (the server has its own session)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130 and "Traceback" not in err
        assert not alive(pid), "the server outlived the interrupted stage"
        done = len(journal.read_text().splitlines())
        out = json.loads(cgd("run", str(path), "--until", "critique", "--runs-dir", str(runs), "--json").stdout)
    assert out["stages"]["critique"]["records"] == 40
    info = json.loads((journal.parent / "done.json").read_text())["info"]
    assert info["from_journal"] == done and info["ok"] == 40
    pids = [int(p) for p in re.findall(r"PID (\d+)", log.read_text())]
    assert len(pids) == 2 and not any(alive(p) for p in pids)


def test_a_server_that_cannot_start_fails_the_stage_with_its_log(tmp_path, data):
    crash = [sys.executable, "-c", "import sys; print('CUDA driver not found'); sys.exit(3)"]
    launcher = ServerLauncher("m", ServeSettings(command=crash), log_path=tmp_path / "server.log")
    with pytest.raises(ServerStartError, match="exited with code 3") as info:
        launcher.start()
    assert "CUDA driver not found" in info.value.log_tail
    with pytest.raises(HarnessError, match="no-such-vllm-binary' not found"):
        ServerLauncher("m", ServeSettings(command=["no-such-vllm-binary"])).start()
    # Through the CLI: a stage failure (exit 1) that shows the server's log tail; a missing command is exit 2.
    with FakeProvider(record_log=False) as student_server:
        student = (f"student: {{model: student, backend: openai_compat, base_url: '{student_server.url}/v1',"
                   f" generation: {{max_tokens: 64}}}}")
        teacher = (f"teacher: {{provider: vllm, model: m, vllm: {{command: [{sys.executable}, -c, "
                   f"\"import sys; print('CUDA driver not found'); sys.exit(3)\"]}}}}")
        path = recipe(tmp_path, data, student, teacher, 4)
        proc = cgd("run", str(path), "--until", "critique", "--runs-dir", str(tmp_path / "r"), check=False)
        assert proc.returncode == 1 and "exited with code 3" in proc.stderr and "CUDA driver not found" in proc.stderr
        path.write_text(path.read_text().replace(f"command: [{sys.executable}, -c,", "command: [no-such-vllm, -c,"))
        proc = cgd("run", str(path), "--until", "critique", "--runs-dir", str(tmp_path / "r"), check=False)
        assert proc.returncode == 2 and "'no-such-vllm' not found" in proc.stderr and "Traceback" not in proc.stderr


def test_hf_backend_batches_prompts_and_samples_n_per_prompt(tiny_model):
    import asyncio

    from harness.llm import ChatRequest
    from harness.llm.hf import HFBackend

    backend = HFBackend(str(tiny_model), batch_size=3)
    requests = [ChatRequest.build([{"role": "user", "content": f"What is {i} + {i}?"}], max_tokens=6, n=3,
                                  temperature=0.9, seed=i) for i in range(5)]

    async def collect():
        return {i: r async for i, r in backend.stream(requests)}

    results = asyncio.run(collect())
    assert sorted(results) == list(range(5))
    assert all(len(r.texts) == 3 and len(r.finish_reasons) == 3 and r.output_tokens > 0 for r in results.values())
