"""A real HTTP server on 127.0.0.1 that speaks the providers' schemas, with failures injected on purpose.

Routes (the shapes the official SDKs validate, checked with `_strict_response_validation=True`):
    POST /v1/chat/completions                     OpenAI chat completions (also the OpenAI-compatible servers)
    POST /v1/files, GET /v1/files/{id}/content    OpenAI files (batch input and output)
    POST /v1/batches, GET /v1/batches[/{id}]      OpenAI Batch API
    POST /v1/messages                             Anthropic Messages
    POST /v1/messages/batches, GET .../{id}, GET .../{id}/results, GET /v1/messages/batches   Message Batches

Answers come from the tiny world's oracle (so critiques carry verdicts and refinements verify), or from a
`responder` given by the test. A `FaultPlan` decides, from the hash of what was sent, whether a request fails and
how: 429 with retry-after, 500, a hang past the client's timeout, a dropped connection, a malformed body, or an
output the harness must reject (no verdict line / cut off at max_tokens). The decision depends only on the payload
and on how many times that payload was seen, so a killed and resumed run meets the same failures as a clean one.
A faulty payload fails once or twice and then succeeds, or (a share `unrecoverable` of them) fails every time.

Every request is counted per payload digest (`received`, `ok`), so tests can prove nothing paid is sent twice.
Run standalone (for the benchmark): `python -m tests.fakes.provider --latency 0.5` prints `PORT <n>`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULT_KINDS = ("429", "500", "timeout", "drop", "malformed", "bad_output")


def digest(body: dict[str, Any]) -> str:
    """What identifies a request: its JSON body, canonical (the SDKs send exactly the params they are given)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Fault:
    kind: str  # one of FAULT_KINDS
    times: int  # how many times this payload fails before it succeeds; -1: always


@dataclass
class FaultPlan:
    """`rate` of payloads are faulty; of those, `unrecoverable` fail every time, the rest once or twice."""

    rate: float = 0.3
    unrecoverable: float = 0.1
    kinds: tuple[str, ...] = FAULT_KINDS
    retry_after_s: float = 0.02
    hang_s: float = 1.5
    seed: int = 0

    def fault_for(self, payload_digest: str) -> Fault | None:
        rng = random.Random(f"{self.seed}:{payload_digest}")
        if rng.random() >= self.rate:
            return None
        kind = self.kinds[rng.randrange(len(self.kinds))]
        return Fault(kind, -1 if rng.random() < self.unrecoverable else rng.choice((1, 2)))


def oracle_text(model: str, messages: list[dict[str, str]]) -> str:
    """Teacher answers from the tiny oracle; a model named 'student' writes a draft (wrong for odd numbers)."""
    from harness.tiny.oracle import respond
    from harness.tiny.problems import parse_question

    if model == "student":
        user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        problem = parse_question(user)
        if problem is None:
            return "I do not know."
        answer = problem.answer + (1 if problem.answer % 2 else 0)
        return f"{problem.solution.rsplit('The answer', 1)[0]}The answer is \\boxed{{{answer}}}."
    return respond(messages)


def _strip_verdict(text: str) -> str:
    return re.sub(r"(?im)^\s*conclusion\s*:.*$", "", text).strip() or "Hmm."


@dataclass
class Stats:
    received: Counter = field(default_factory=Counter)  # digest -> requests seen
    ok: Counter = field(default_factory=Counter)  # digest -> successful answers written
    log: list[tuple[int, str, str, str]] = field(default_factory=list)  # (seq, route, digest, recv|outcome)
    batches_created: int = 0
    batch_items: Counter = field(default_factory=Counter)  # custom_id -> times submitted in a batch
    auth: set[str] = field(default_factory=set)  # credentials seen (tests check the key really was sent)


class FakeProvider:
    def __init__(self, *, faults: FaultPlan | None = None, latency_s: float = 0.0,
                 responder: Callable[[str, list[dict[str, str]]], str] | None = None,
                 batch_polls_until_done: int = 1, hold_batches: bool = False, port: int = 0,
                 record_log: bool = True, require_key: str | None = None) -> None:
        self.faults = faults
        self.latency_s = latency_s
        self.responder = responder or oracle_text
        self.batch_polls_until_done = batch_polls_until_done
        self.hold_batches = hold_batches  # batches stay in progress until a test releases them
        self.record_log = record_log
        self.require_key = require_key  # answer 401 to any other credential
        self.stats = Stats()
        self.lock = threading.Lock()
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self.files: dict[str, bytes] = {}
        self.openai_batches: dict[str, dict[str, Any]] = {}
        self.anthropic_batches: dict[str, dict[str, Any]] = {}
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.provider = self
        self._thread: threading.Thread | None = None

    # --- life cycle -------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeProvider:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- bookkeeping ------------------------------------------------------------------------------------------
    def seq(self) -> int:
        """The sequence number the next request will get (tests mark 'before' and 'after' with it)."""
        with self.lock:
            return len(self.stats.log)

    def _note(self, route: str, d: str, outcome: str) -> None:
        with self.lock:
            if outcome == "ok":
                self.stats.ok[d] += 1
            if self.record_log:
                self.stats.log.append((next(self._seq), route, d, outcome))

    def _fault(self, d: str, route: str = "") -> Fault | None:
        """Count the arrival (logged as `recv`) and decide whether this try fails."""
        with self.lock:
            self.stats.received[d] += 1
            seen = self.stats.received[d]
            if self.record_log and route:
                self.stats.log.append((next(self._seq), route, d, "recv"))
        if self.faults is None:
            return None
        fault = self.faults.fault_for(d)
        if fault is None or (fault.times != -1 and seen > fault.times):
            return None
        return fault

    def new_id(self, prefix: str) -> str:
        with self.lock:
            return f"{prefix}{next(self._ids):06d}"

    # --- answers ----------------------------------------------------------------------------------------------
    def answer(self, model: str, messages: list[dict[str, str]], fault: Fault | None, critique_hint: bool
               ) -> tuple[str, bool]:
        """(text, cut_off). A bad_output fault drops the verdict of a critique or cuts another answer off."""
        text = self.responder(model, messages)
        if fault is not None and fault.kind == "bad_output":
            if critique_hint:
                return _strip_verdict(text), False
            return text[: max(1, len(text) // 2)], True
        return text, False

    def chat_completion(self, body: dict[str, Any], fault: Fault | None) -> dict[str, Any]:
        messages = body["messages"]
        n = int(body.get("n") or 1)
        choices = []
        for i in range(n):
            text, cut = self.answer(body["model"], messages, fault, _is_critique(messages))
            choices.append({"index": i, "message": {"role": "assistant", "content": text, "refusal": None},
                            "finish_reason": "length" if cut else "stop", "logprobs": None})
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        out_tokens = sum(len(c["message"]["content"].split()) for c in choices)
        return {"id": self.new_id("chatcmpl-"), "object": "chat.completion", "created": int(time.time()),
                "model": body["model"], "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": out_tokens,
                          "total_tokens": prompt_tokens + out_tokens}}

    def message(self, body: dict[str, Any], fault: Fault | None) -> dict[str, Any]:
        system = body.get("system")
        if isinstance(system, list):
            system = "".join(block.get("text", "") for block in system)
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": m["role"], "content": m["content"] if isinstance(m["content"], str)
             else "".join(b.get("text", "") for b in m["content"])} for m in body["messages"]]
        text, cut = self.answer(body["model"], messages, fault, _is_critique(messages))
        cached = len(system.split()) if system and isinstance(body.get("system"), list) else 0
        in_tokens = sum(len(m["content"].split()) for m in messages) - cached
        return {"id": self.new_id("msg_"), "type": "message", "role": "assistant", "model": body["model"],
                "content": [{"type": "text", "text": text, "citations": None}],
                "stop_reason": "max_tokens" if cut else "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": in_tokens, "output_tokens": len(text.split()),
                          "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0}}


def _is_critique(messages: list[dict[str, str]]) -> bool:
    return any("Student's Answer" in m["content"] for m in messages if m["role"] == "user")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True
    provider: FakeProvider


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stalls
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    # --- plumbing ---------------------------------------------------------------------------------------------
    @property
    def p(self) -> FakeProvider:
        return self.server.provider

    def _body(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload: Any, *, headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> bool:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(raw)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(raw)
            self.wfile.flush()
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def _error(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, {"type": "error", "error": {"type": kind, "message": message}}, headers=headers)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _auth(self) -> bool:
        cred = (self.headers.get("authorization") or self.headers.get("x-api-key") or "").removeprefix("Bearer ")
        with self.p.lock:
            self.p.stats.auth.add(cred)
        if self.p.require_key is not None and cred != self.p.require_key:
            self._body()
            self._error(401, "authentication_error", "invalid x-api-key")
            return False
        return True

    # --- routing ----------------------------------------------------------------------------------------------
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        if not self._auth():
            return None
        path = self.path.split("?")[0]
        raw = self._body()
        if path == "/v1/files":
            return self._upload(raw)
        body = json.loads(raw or b"{}")
        if path == "/v1/chat/completions":
            return self._generate("chat", body)
        if path == "/v1/messages":
            return self._generate("messages", body)
        if path == "/v1/batches":
            return self._openai_batch_create(body)
        if path == "/v1/messages/batches":
            return self._anthropic_batch_create(body)
        self._error(404, "not_found_error", f"no route {path}")

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?")[0]
        if path in ("/health", "/v1/models"):
            return self._send(200, {"object": "list", "data": []})
        if not self._auth():
            return None
        if m := re.fullmatch(r"/v1/files/([\w-]+)/content", path):
            return self._send(200, self.p.files.get(m.group(1), b""), content_type="application/octet-stream")
        if path == "/v1/batches":
            data = list(self.p.openai_batches.values())
            return self._send(200, {"object": "list", "data": data, "has_more": False,
                                    "first_id": data[0]["id"] if data else None,
                                    "last_id": data[-1]["id"] if data else None})
        if m := re.fullmatch(r"/v1/batches/([\w-]+)", path):
            return self._openai_batch_get(m.group(1))
        if path == "/v1/messages/batches":
            data = [self._anthropic_view(b) for b in self.p.anthropic_batches.values()]
            return self._send(200, {"data": data, "has_more": False,
                                    "first_id": data[0]["id"] if data else None,
                                    "last_id": data[-1]["id"] if data else None})
        if m := re.fullmatch(r"/v1/messages/batches/([\w-]+)/results", path):
            return self._anthropic_results(m.group(1))
        if m := re.fullmatch(r"/v1/messages/batches/([\w-]+)", path):
            return self._send(200, self._anthropic_view(self.p.anthropic_batches[m.group(1)], poll=True))
        self._error(404, "not_found_error", f"no route {path}")

    # --- direct generation ------------------------------------------------------------------------------------
    def _generate(self, route: str, body: dict[str, Any]) -> None:
        d = digest(body)
        fault = self.p._fault(d, route)
        if self.p.latency_s:
            time.sleep(self.p.latency_s)
        kind = fault.kind if fault else None
        if kind == "429":
            self.p._note(route, d, "429")
            ms = str(int(self.p.faults.retry_after_s * 1000))
            return self._error(429, "rate_limit_error", "slow down",
                               headers={"retry-after-ms": ms, "retry-after": str(self.p.faults.retry_after_s)})
        if kind == "500":
            self.p._note(route, d, "500")
            return self._error(500, "api_error", "internal error")
        if kind == "timeout":
            self.p._note(route, d, "timeout")
            time.sleep(self.p.faults.hang_s)
            return self._drop()
        if kind == "drop":
            self.p._note(route, d, "drop")
            return self._drop()
        if kind == "malformed":
            self.p._note(route, d, "malformed")
            self._send(200, b'{"id": "x", "choices": [{"index": 0, "mess')
            return None
        answer = self.p.chat_completion(body, fault) if route == "chat" else self.p.message(body, fault)
        if self._send(200, answer):
            self.p._note(route, d, "ok")
        return None

    # --- OpenAI files and batches -----------------------------------------------------------------------------
    def _upload(self, raw: bytes) -> None:
        boundary = self.headers.get("content-type", "").split("boundary=")[-1].strip('"').encode()
        content = b""
        for part in raw.split(b"--" + boundary):
            if b'name="file"' in part:
                content = part.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n", 1)[0]
        file_id = self.p.new_id("file-")
        self.p.files[file_id] = content
        self._send(200, {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                         "filename": "batch.jsonl", "purpose": "batch", "status": "processed"})

    def _openai_batch_create(self, body: dict[str, Any]) -> None:
        batch_id = self.p.new_id("batch_")
        lines = [json.loads(x) for x in self.p.files[body["input_file_id"]].decode().splitlines() if x.strip()]
        with self.p.lock:
            self.p.stats.batches_created += 1
            for line in lines:
                self.p.stats.batch_items[line["custom_id"]] += 1
        batch = {"id": batch_id, "object": "batch", "endpoint": body["endpoint"],
                 "input_file_id": body["input_file_id"], "completion_window": body["completion_window"],
                 "status": "validating", "created_at": int(time.time()),
                 "metadata": body.get("metadata"), "output_file_id": None, "error_file_id": None,
                 "request_counts": {"total": len(lines), "completed": 0, "failed": 0}, "_lines": lines, "_polls": 0}
        self.p.openai_batches[batch_id] = batch
        self._send(200, _public(batch))

    def _openai_batch_get(self, batch_id: str) -> None:
        batch = self.p.openai_batches[batch_id]
        batch["_polls"] += 1
        if batch["status"] != "completed":
            batch["status"] = "in_progress"
        ready = not self.p.hold_batches and batch["_polls"] >= self.p.batch_polls_until_done
        if batch["status"] != "completed" and ready:
            out, err = [], []
            for line in batch["_lines"]:
                d = digest(line["body"])
                fault = self.p._fault(d)
                if fault and fault.kind in ("500", "429", "timeout", "drop", "malformed"):
                    err.append({"id": self.p.new_id("batch_req_"), "custom_id": line["custom_id"],
                                "response": {"status_code": 500, "request_id": "r",
                                             "body": {"error": {"message": "server error", "type": "server_error"}}},
                                "error": None})
                    self.p._note("batch", d, "500")
                    continue
                out.append({"id": self.p.new_id("batch_req_"), "custom_id": line["custom_id"], "error": None,
                            "response": {"status_code": 200, "request_id": "r",
                                         "body": self.p.chat_completion(line["body"], fault)}})
                self.p._note("batch", d, "ok")
            batch["output_file_id"] = self.p.new_id("file-")
            self.p.files[batch["output_file_id"]] = "".join(json.dumps(x) + "\n" for x in out).encode()
            if err:
                batch["error_file_id"] = self.p.new_id("file-")
                self.p.files[batch["error_file_id"]] = "".join(json.dumps(x) + "\n" for x in err).encode()
            batch.update(status="completed", completed_at=int(time.time()),
                         request_counts={"total": len(batch["_lines"]), "completed": len(out), "failed": len(err)})
        self._send(200, _public(batch))

    # --- Anthropic message batches ----------------------------------------------------------------------------
    def _anthropic_batch_create(self, body: dict[str, Any]) -> None:
        batch_id = self.p.new_id("msgbatch_")
        with self.p.lock:
            self.p.stats.batches_created += 1
            for item in body["requests"]:
                self.p.stats.batch_items[item["custom_id"]] += 1
        batch = {"id": batch_id, "requests": body["requests"], "created_at": _now_iso(), "_polls": 0,
                 "ended": False, "results": None}
        self.p.anthropic_batches[batch_id] = batch
        self._send(200, self._anthropic_view(batch))

    def _anthropic_view(self, batch: dict[str, Any], poll: bool = False) -> dict[str, Any]:
        if poll:
            batch["_polls"] += 1
            if not batch["ended"] and not self.p.hold_batches and batch["_polls"] >= self.p.batch_polls_until_done:
                self._anthropic_finish(batch)
        n = len(batch["requests"])
        results = batch["results"] or []
        counts = {"processing": 0 if batch["ended"] else n, "canceled": 0, "expired": 0,
                  "succeeded": sum(1 for r in results if r["result"]["type"] == "succeeded"),
                  "errored": sum(1 for r in results if r["result"]["type"] == "errored")}
        return {"id": batch["id"], "type": "message_batch", "processing_status": "ended" if batch["ended"] else
                "in_progress", "request_counts": counts, "created_at": batch["created_at"],
                "expires_at": batch["created_at"], "ended_at": _now_iso() if batch["ended"] else None,
                "archived_at": None, "cancel_initiated_at": None,
                "results_url": f"{self.p.url}/v1/messages/batches/{batch['id']}/results" if batch["ended"] else None}

    def _anthropic_finish(self, batch: dict[str, Any]) -> None:
        results = []
        for item in batch["requests"]:
            d = digest(item["params"])
            fault = self.p._fault(d)
            if fault and fault.kind in ("500", "429", "timeout", "drop", "malformed"):
                result: dict[str, Any] = {"type": "errored", "error": {"type": "error", "error": {
                    "type": "overloaded_error" if fault.kind == "429" else "api_error", "message": "try again"}}}
                self.p._note("batch", d, "errored")
            else:
                result = {"type": "succeeded", "message": self.p.message(item["params"], fault)}
                self.p._note("batch", d, "ok")
            results.append({"custom_id": item["custom_id"], "result": result})
        batch.update(ended=True, results=results)

    def _anthropic_results(self, batch_id: str) -> None:
        batch = self.p.anthropic_batches[batch_id]
        raw = "".join(json.dumps(r) + "\n" for r in batch["results"] or []).encode()
        self._send(200, raw, content_type="application/binary")


def _public(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if not k.startswith("_")}


def serve_asyncio(port: int, latency: float) -> None:
    """A lean asyncio (aiohttp) server for the throughput benchmark: chat completions and messages only, a fixed
    short answer after `latency` seconds. A thread per connection (the stdlib server) would measure the server's
    GIL contention at hundreds of requests per second, not the harness."""
    import asyncio

    from aiohttp import web

    ids = itertools.count(1)

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(latency)
        return web.json_response({
            "id": f"chatcmpl-{next(ids)}", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok. Conclusion: right"},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}})

    async def messages(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(latency)
        return web.json_response({
            "id": f"msg_{next(ids)}", "type": "message", "role": "assistant", "model": body["model"],
            "content": [{"type": "text", "text": "ok. Conclusion: right"}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 4}})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def run() -> None:
        app = web.Application()
        app.add_routes([web.post("/v1/chat/completions", chat), web.post("/v1/messages", messages),
                        web.get("/health", health)])
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, backlog=2048)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"PORT {bound}\nPID {os.getpid()}", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


def main() -> None:
    # Also usable as the "server" the vllm launcher starts: `... provider MODEL --host 127.0.0.1 --port N`.
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--simple", action="store_true", help="answer every request with one short fixed text")
    parser.add_argument("--asyncio", action="store_true", help="the lean aiohttp server (benchmarks; no faults)")
    args = parser.parse_args()
    if args.asyncio:
        return serve_asyncio(args.port, args.latency)
    faults = FaultPlan(rate=args.fault_rate) if args.fault_rate else None
    provider = FakeProvider(latency_s=args.latency, faults=faults, port=args.port, record_log=False,
                            responder=(lambda model, messages: "ok. Conclusion: right") if args.simple else None)
    print(f"PORT {provider.port}\nPID {os.getpid()}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        provider._server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
