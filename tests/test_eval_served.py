"""The served back-end against a tiny local OpenAI-compatible server: generative tasks through chat completions
(pass@k with a different seed per sample), log-likelihood tasks through completions with prompt logprobs, and the
`vllm` back-end's launcher hook (one server per model)."""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from rich.console import Console

from harness.evaluation import EvalBackend, load_suite, run_suite
from harness.paths import EVAL_SUITES_DIR

pytest_plugins = ["tests.helpers.eval_env"]  # fixtures: eval_env, tiny

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
ANSWERS = {  # fixture question (start) -> the mock model's reply
    "What is the value of": "1/2 + 1/3 = 5/6, so \\boxed{\\dfrac{5}{6}}.",  # right
    "Solve for $x$": "x = \\boxed{7}",  # wrong
    "For which real $x$": "\\boxed{(-2, 2)}",  # right
    "Janet has 16 eggs": "9 eggs at $2 each: she makes \\boxed{18} dollars.",  # right
    "A shop sells 1,200 cups": "\\boxed{3600}",  # right
}
SAMPLED = {"Find the number of ordered pairs": 9, "What is the largest prime factor": 5}  # aime25 fixtures


class MockServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[tuple[str, dict]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: MockServer

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, body))
        if self.path.endswith("/chat/completions"):
            user = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
            text = next((a for q, a in ANSWERS.items() if user.startswith(q)), None)
            gold = next((a for q, a in SAMPLED.items() if user.startswith(q)), None)
            if text is None and gold is not None:  # the pass@k task: right for even seeds only
                text = f"\\boxed{{{gold if body['seed'] % 2 == 0 else gold + 1}}}"
            if text is None:  # EvalPlus asks for code
                text = "```python\ndef add(a, b):\n    return a + b\n```"
            out = {"id": "c", "object": "chat.completion", "model": body["model"],
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                "finish_reason": "stop"}]}
        elif self.path.endswith("/completions"):  # log-likelihood: echo the prompt with logprobs
            prompts = body["prompt"] if isinstance(body["prompt"][0], list) else [body["prompt"]]
            choices = []
            for i, p in enumerate(prompts):
                n = len(p) + 1
                choices.append({"index": i, "text": "", "finish_reason": "length",
                                "logprobs": {"token_logprobs": [None] + [-0.5] * (n - 1),
                                             "top_logprobs": [None] + [{"x": -0.5}] * (n - 1)}})
            out = {"id": "c", "object": "text_completion", "model": body["model"], "choices": choices}
        else:
            self.send_error(404)
            return
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def server():
    srv = MockServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _suite(tmp_path: Path, tasks: str) -> dict:
    (tmp_path / "served_check.yaml").write_text(f"""\
name: served_check
lm_eval:
  include_path: {EVAL_SUITES_DIR / "tasks" / "math"}
  fewshot_as_multiturn: false
  system_instruction: "{INSTRUCTION.replace(chr(92), chr(92) * 2)}"
  max_gen_toks: 32
  tasks:
{tasks}""")
    return load_suite("served_check", tmp_path)


def test_served_backend_chat_completions_and_loglikelihood(eval_env, tiny, server, tmp_path):
    suite = _suite(tmp_path, """\
    - {task: cgd_math500, benchmark: math500, metric: exact_match}
    - {task: cgd_gsm8k, benchmark: gsm8k, metric: exact_match}
    - {task: cgd_aime25, benchmark: aime25, metric: pass@2, samples: {n: 4, k: [1, 2], temperature: 0.6, top_p: 0.95}}
    - {task: truthfulqa_mc2, benchmark: truthfulqa, metric: acc}
""")
    backend = EvalBackend(kind="served", base_url=server.url, served_model="student", num_concurrent=2)
    # the same suite in-process first (hf, sampling for pass@k): the metrics exist, the values are the tiny model's
    local = run_suite(suite, model_path=str(tiny), out_dir=tmp_path / "out", limit=None, batch_size=4,
                      console=Console())
    assert {(r["benchmark"], r["metric"]) for r in local if r["benchmark"] == "aime25"} == {
        ("aime25", "exact_match"), ("aime25", "pass@1"), ("aime25", "pass@2")}
    rows = run_suite(suite, model_path=str(tiny), out_dir=tmp_path / "served", limit=None, batch_size=4,
                     console=Console(), backend=backend)
    value = {(r["benchmark"], r["metric"]): r["value"] for r in rows}
    assert value[("math500", "exact_match")] == pytest.approx(2 / 3)
    assert value[("gsm8k", "exact_match")] == pytest.approx(1.0)
    # 4 samples per problem with seeds 1234..1237: two are right
    assert value[("aime25", "exact_match")] == pytest.approx(0.5)
    assert value[("aime25", "pass@1")] == pytest.approx(0.5)
    assert value[("aime25", "pass@2")] == pytest.approx(5 / 6)
    assert ("truthfulqa", "acc") in value
    assert {r["backend"] for r in rows} == {"served:cgd-chat-completions", "served:local-completions"}

    chats = [b for p, b in server.requests if p == "/v1/chat/completions"]
    assert len(chats) == 3 + 2 + 2 * 4
    greedy = [b for b in chats if "top_p" not in b]
    assert len(greedy) == 5 and all(b["temperature"] == 0.0 and b["max_tokens"] == 32 for b in greedy)
    first = greedy[0]
    assert first["model"] == "student" and "<|im_end|>" in first["stop"]
    assert first["messages"][0]["role"] == "system" and first["messages"][0]["content"] == INSTRUCTION
    sampled = [b for b in chats if b.get("top_p") == 0.95]
    assert len(sampled) == 8 and sorted({b["seed"] for b in sampled}) == [1234, 1235, 1236, 1237]
    assert all(b["temperature"] == 0.6 for b in sampled)
    completions = [b for p, b in server.requests if p == "/v1/completions"]
    assert completions and all(b["echo"] and b["logprobs"] == 1 for b in completions)


def test_vllm_backend_runs_loglikelihood_first_then_one_server_for_all_generation(eval_env, tiny, server,
                                                                                  tmp_path):
    from harness.stages.evaluate import score_model

    mixed = _suite(tmp_path, """\
    - {task: cgd_math500, benchmark: math500, metric: exact_match}
    - {task: truthfulqa_mc2, benchmark: truthfulqa, metric: acc}
""")
    code = load_suite("code")
    events = []

    @contextlib.contextmanager
    def launch(model_path, log_path):
        events.append(("start", model_path))
        yield server.url
        events.append(("stop", model_path))

    backend = EvalBackend(kind="vllm", loglikelihood="hf")
    rows, _ = score_model(str(tiny), [mixed, code], store_root=tmp_path / "runs", limit=2, batch_size=2,
                          backend=backend, console=Console(), launch=launch)
    assert events == [("start", str(tiny)), ("stop", str(tiny))]  # one server for both suites
    backends = {r["benchmark"]: r["backend"] for r in rows if r["primary"]}
    assert backends == {"math500": "vllm:cgd-chat-completions", "truthfulqa": "vllm:hf",
                        "humaneval_plus": "vllm:evalplus-openai", "mbpp_plus": "vllm:evalplus-openai"}
    value = {r["benchmark"]: r["value"] for r in rows if r["primary"]}
    assert value["math500"] == 0.5
    paths = {p for p, _ in server.requests}
    assert paths == {"/v1/chat/completions"}  # log-likelihood stayed in-process
    models = {b["model"] for _, b in server.requests}
    assert models == {str(tiny)}
    evalplus_prompts = [b for _, b in server.requests if "Python script" in json.dumps(b["messages"])]
    assert len(evalplus_prompts) == 4  # 2 HumanEval+ and 2 MBPP+ problems
    assert load_suite("math")["lm_eval"]["system_instruction"] == INSTRUCTION
