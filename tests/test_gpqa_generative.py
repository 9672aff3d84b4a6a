"""GPQA Diamond as the CGD paper scored it (generative 5-shot CoT, run_open.py --form llama3), run by the real
lm-eval on the seeded GPQA fixture rows with a tiny model; the prompt of every sample is the official one."""

from __future__ import annotations

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from rich.console import Console

from harness.evaluation import load_suite, run_suite
from harness.paths import EVAL_SUITES_DIR
from harness.report.groups import display_name, group_of

pytest_plugins = ["tests.helpers.eval_env"]  # fixtures: eval_env, tiny

FIXTURE = EVAL_SUITES_DIR / "fixtures" / "hf" / "Idavidrein__gpqa" / "gpqa_diamond" / "train.jsonl"
OFFICIAL_STOP = ["USER:", "ASSISTANT:", "### Instruction:", "Response:", "\n\nProblem", "\nProblem", "Problem:",
                 "<|eot_id|>", "####"]


# --- the official construction, transcribed from CFT's tools/evaluate_gpqa (which CGD's run_open.py runs) --------
def _official_question(example: dict) -> dict:
    """data_loader.generate_question_and_answers (global `random`, seeded by the caller)."""
    labels = ["A", "B", "C", "D"]
    choice_order = random.sample([1, 2, 3, 4], 4)
    ans_idx = choice_order.index(4)
    ordered = [example[f"Incorrect Answer {i}"] if i != 4 else example["Correct Answer"] for i in choice_order]
    ordered = [f"({labels[i]}) {choice}" for i, choice in enumerate(ordered)]
    if example["Question"][-1] == "\n":
        question = example["Question"] + "Answer Choices: " + " ".join(ordered)
    else:
        question = example["Question"] + "\nAnswer Choices: " + " ".join(ordered)
    return {"question": question, "answer": labels[ans_idx]}


def _official_llama3_prompt(qas: list[tuple[str, str]]) -> tuple[str, str]:
    """prompt_utils.get_llama3_prompt."""
    tmp = "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
    for q, a in qas:
        turn = ("<|start_header_id|>user<|end_header_id|>\n\n{query}<|eot_id|><|start_header_id|>assistant"
                "<|end_header_id|>\n\n{response}<|eot_id|>")
        tmp += turn.format(query=q, response=a)
    prefix = ("<|start_header_id|>user<|end_header_id|>\n\n{query}<|eot_id|><|start_header_id|>assistant"
              "<|end_header_id|>\n\n")
    return tmp, prefix


def _official_prompts() -> list[tuple[str, str]]:
    """(prompt, gold letter) per fixture row, as run_open.py builds them after vLLM's seed-0 `random.seed`."""
    shots = json.loads((EVAL_SUITES_DIR / "tasks" / "gpqa" / "cot_examples.json").read_text())["shots"]
    qas = [(s["question"], s["answer"]) for s in shots][:5]
    state = random.getstate()
    random.seed(0)
    try:
        rows = [_official_question(json.loads(line)) for line in FIXTURE.read_text().splitlines() if line.strip()]
    finally:
        random.setstate(state)
    head, prefix = _official_llama3_prompt(qas)
    return [(head + prefix.format(query=r["question"]), r["answer"]) for r in rows]


def test_shots_are_the_five_published_demonstrations():
    shots = json.loads((EVAL_SUITES_DIR / "tasks" / "gpqa" / "cot_examples.json").read_text())["shots"]
    assert len(shots) == 5
    assert all(s["answer"].endswith(f"The answer is ({x}).") for s, x in zip(shots, "DABAC", strict=True))
    assert shots[0]["question"].startswith("In a given population, 1 out of every 400 people")
    assert "p∧2 + 2pq + q∧2 = 1" in shots[0]["answer"] and "Hooke’s law" in shots[2]["question"]


def test_gpqa_generative_scored_on_the_fixture_by_lm_eval(eval_env, tiny, tmp_path):
    suite = load_suite("gpqa_cot", max_gen_toks=4)
    lm = suite["lm_eval"]
    assert lm["apply_chat_template"] is False and lm["system_instruction"] is None
    rows = run_suite(suite, model_path=str(tiny), out_dir=tmp_path, limit=3, batch_size=4, console=Console())
    [row] = [r for r in rows if r["primary"]]
    assert (row["benchmark"], row["metric"], row["n"]) == ("gpqa_diamond_cot", "exact_match", 3)
    assert 0.0 <= row["value"] <= 1.0
    official = _official_prompts()
    samples = [json.loads(line) for line in Path(row["samples"]).read_text().splitlines()]
    assert len(samples) == 3
    for sample in samples:
        prompt, gold = official[sample["doc_id"]]
        args = sample["arguments"]["gen_args_0"]
        assert args["arg_0"] == prompt  # byte for byte the official 5-shot prompt of that row
        assert sample["target"] == gold
        assert args["arg_1"]["until"][:len(OFFICIAL_STOP)] == OFFICIAL_STOP and args["arg_1"]["max_gen_toks"] == 4
        assert args["arg_1"]["do_sample"] is False
    # the log-likelihood protocol stays in suite general under its own name
    general = {t["benchmark"]: t["task"] for t in load_suite("general")["lm_eval"]["tasks"]}
    assert general["gpqa_diamond"] == "gpqa_diamond_n_shot" and "gpqa_diamond_cot" not in general


@pytest.mark.parametrize(("output", "expected"), [
    ("Step one. Step two. The answer is (D).", "D"),
    ("Reasoning...\nThe answer is: B", "B"),
    ("so the answer is (c).", "C"),
    ("No trigger here: (A) looks wrong, (C) fits.", "C"),  # no trigger: the last letter
    ("The answer is (B).\n\nQuestion: next one\nThe answer is (A).", "B"),  # continued with more examples
    ("The answer is 42.", "42"),  # no letter: the cleaned text, never equal to a letter
])
def test_answer_extraction_follows_answer_clean(output, expected):
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpqa_utils", EVAL_SUITES_DIR / "tasks" / "gpqa" / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(utils)
    assert utils.extract_answer(output) == expected
    assert utils.process_results({"answer": "C"}, [output])["exact_match"] == float(expected == "C")


def test_report_knows_the_generative_gpqa():
    assert display_name("gpqa_diamond_cot") == "GPQA (CoT)"
    assert group_of("gpqa_diamond_cot").id == "general"
    assert display_name("gpqa_diamond") == "GPQA"


class _CompletionsServer(ThreadingHTTPServer):
    """An OpenAI-compatible completions endpoint: answers GPQA prompts with a fixed reply per prompt."""

    daemon_threads = True

    def __init__(self, replies: dict[str, str]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.replies = replies
        self.requests: list[dict] = []


class _Handler(BaseHTTPRequestHandler):
    server: _CompletionsServer

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        choices = [{"index": i, "text": self.server.replies.get(p, "") if isinstance(p, str) else "",
                    "finish_reason": "stop"}
                   for i, p in enumerate(prompts)]
        data = json.dumps({"id": "c", "object": "text_completion", "model": body["model"],
                           "choices": choices}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_served_gpqa_goes_as_the_raw_official_prompt_and_is_scored(eval_env, tiny, tmp_path):
    from harness.evaluation import EvalBackend

    official = _official_prompts()[:3]
    wrong = {"A": "B", "B": "C", "C": "D", "D": "A"}
    replies = {official[0][0]: f"Because of X. The answer is ({official[0][1]}).",
               official[1][0]: f"**Step 1** ... so the answer is {official[1][1]}.\n\nQuestion: more text",
               official[2][0]: f"The answer is ({wrong[official[2][1]]})."}
    srv = _CompletionsServer(replies)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        backend = EvalBackend(kind="served", base_url=f"http://127.0.0.1:{srv.server_address[1]}",
                              served_model="student", num_concurrent=1)
        rows = run_suite(load_suite("gpqa_cot"), model_path=str(tiny), out_dir=tmp_path, limit=3, batch_size=1,
                         console=Console(), backend=backend)
    finally:
        srv.shutdown()
        srv.server_close()
    [row] = [r for r in rows if r["primary"]]
    assert row["backend"] == "served:local-completions"  # raw text to the completions endpoint, no chat template
    assert row["value"] == pytest.approx(2 / 3)
    sent = [p for body in srv.requests for p in (body["prompt"] if isinstance(body["prompt"], list)
                                                 else [body["prompt"]])]
    assert sorted(sent) == sorted(p for p, _ in official)
    assert all(body["stop"][:len(OFFICIAL_STOP)] == OFFICIAL_STOP and body["max_tokens"] == 2048
               and body["temperature"] == 0.0 for body in srv.requests)
