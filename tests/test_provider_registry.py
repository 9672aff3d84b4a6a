"""Provider facts are declared once, at a back-end's registration, and everything else reads them from there.

A throwaway back-end registered from this module (no edit under harness/) is validated, priced, fingerprinted and
run in batch mode by the generic runner, which knows nothing about how a provider counts or names batch items."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

import harness.llm as llm
from harness.errors import HarnessError, RecipeError
from harness.llm import (
    BACKENDS,
    ChatRequest,
    ChatResult,
    LLMError,
    SendPolicy,
    canonical,
    make_backend,
    provider_info,
    providers,
    register_backend,
)
from harness.llm.base import Backend, BatchBackend, BatchState
from harness.pricing import PRICES, is_priced, price_for
from harness.recipe import load_recipes
from harness.recipe.schema import TeacherSpec
from harness.registry import UnknownName
from harness.stages.base import StageContext
from harness.stages.generation import Malformed, run_generation
from harness.stages.teacher import chat, teacher_job, teacher_params
from harness.store import RunStore
from tests.test_recipe import BASE


class AcmeBackend(Backend, BatchBackend):
    """A provider with a batch API of its own making: one batch item per sample, results filed under its own ids,
    and a first submission whose answer is lost (the batch exists, the id never arrives)."""

    name = "acme"

    def __init__(self, model: str, policy: SendPolicy) -> None:
        super().__init__(model, policy=policy)
        self.batches: dict[str, tuple[str, list[tuple[str, ChatRequest]]]] = {}
        self.submits = 0
        self.found_with: list[int] = []

    async def complete(self, request: ChatRequest) -> ChatResult:
        return ChatResult(texts=["direct. Conclusion: right"] * request.n, input_tokens=100, output_tokens=10)

    def result_id(self, key: str) -> str:
        return f"acme:{key[-20:]}"

    def batch_request_count(self, items: list[tuple[str, ChatRequest]]) -> int:
        return sum(req.n for _, req in items)

    async def submit_batch(self, items: list[tuple[str, ChatRequest]], tag: str) -> str:
        self.submits += 1
        batch_id = f"batch-{len(self.batches)}"
        self.batches[batch_id] = (tag, items)
        if self.submits == 1:
            raise LLMError("connection dropped after the batch was created", retryable=True)
        return batch_id

    async def find_batch(self, tag: str, count: int, since: float) -> str | None:
        self.found_with.append(count)
        for batch_id, (t, items) in self.batches.items():
            if t == tag and count == sum(req.n for _, req in items):
                return batch_id
        return None

    async def batch_state(self, batch_id: str) -> BatchState:
        return BatchState("ended", "done")

    async def batch_results(self, batch_id: str) -> dict[str, ChatResult | LLMError]:
        _, items = self.batches[batch_id]
        return {self.result_id(key): ChatResult(texts=[f"batched {j}. Conclusion: right" for j in range(req.n)],
                                                input_tokens=100, output_tokens=10)
                for key, req in items}


@pytest.fixture
def acme(monkeypatch):
    """Register throwaway back-ends for one test; the registry is restored afterwards."""
    monkeypatch.setattr(BACKENDS, "_items", dict(BACKENDS._items))
    monkeypatch.setattr(llm, "_ORDER", list(llm._ORDER))
    made: list[AcmeBackend] = []

    @register_backend("acme", "acme-cloud", batch=True, needs_key=True, paid=True)
    def _acme(spec, model, **_):
        made.append(AcmeBackend(model, SendPolicy.from_spec(spec)))
        return made[-1]

    @register_backend("homebrew", self_hosted=True)
    def _homebrew(spec, model, **_):
        return AcmeBackend(model, SendPolicy.from_spec(spec))

    return made


def _load(tmp_path, teacher: str) -> list:
    path = tmp_path / "r.yaml"
    path.write_text(BASE.replace("teacher: {provider: oracle, model: oracle}", teacher))
    return load_recipes(path)


def test_a_registered_backend_is_validated_from_its_facts(tmp_path, acme):
    with pytest.raises(RecipeError) as err:
        _load(tmp_path, "teacher: {provider: acme, model: gpt-4o, batch: true}")
    [problem] = err.value.problems  # batch is fine (declared), the key is missing (declared as needed)
    assert "acme needs the name of the environment variable" in problem.message and problem.line == 4
    [recipe] = _load(tmp_path, "teacher: {provider: acme-cloud, model: gpt-4o, batch: true, api_key_env: K}")
    assert canonical(recipe.teacher.provider) == "acme"
    with pytest.raises(RecipeError, match="'homebrew' has no batch API; batch mode works with openai, anthropic, "
                                          "acme"):
        _load(tmp_path, "teacher: {provider: homebrew, model: m, batch: true}")
    with pytest.raises(RecipeError, match="unknown teacher provider 'acme-x'; available: .*acme, acme-cloud"):
        _load(tmp_path, "teacher: {provider: acme-x, model: m}")
    with pytest.raises(UnknownName, match="unknown back-end 'nope'; available: acme, acme-cloud, anthropic"):
        provider_info("nope")


def test_a_registered_backend_is_priced_and_fingerprinted_from_its_facts(acme):
    assert price_for("acme", "gpt-4o-2024-08-06") == PRICES["gpt-4o"]  # paid: the table, by longest prefix
    assert not is_priced("acme", "mystery-1")  # paid but not in the table: `cgd plan` says the price is unknown
    assert price_for("homebrew", "gpt-4o").free and is_priced("homebrew", "mystery-1")  # not paid: free
    assert llm.BATCH_CAPABLE == ("openai", "anthropic", "acme")
    from harness.pricing import PAID_PROVIDERS

    assert PAID_PROVIDERS == ("openai", "anthropic", "acme")
    # base_url is part of a teacher's identity only where the user serves the model
    paid = TeacherSpec(provider="acme-cloud", model="gpt-4o", base_url="http://proxy")
    served = TeacherSpec(provider="homebrew", model="m", base_url="http://box:8000/v1")
    assert teacher_params(type("R", (), {"teacher": paid})())["base_url"] is None
    assert teacher_params(type("R", (), {"teacher": served})())["base_url"] == "http://box:8000/v1"
    assert teacher_params(type("R", (), {"teacher": paid})())["provider"] == "acme"


def test_shipped_teacher_params_are_unchanged():
    """Part of every teacher stage's fingerprint: moving the facts must not re-pay any cached work."""
    kept = set()
    for info in providers():
        spec = TeacherSpec(provider=info.name, model="m", base_url="http://x/v1")
        params = teacher_params(type("R", (), {"teacher": spec})())
        assert params == {"provider": info.name, "model": "m", "generation": spec.generation.model_dump(),
                          "base_url": params["base_url"]}
        if params["base_url"] is not None:
            kept.add(info.name)
    assert kept == {"openai_compat", "vllm", "hf"}
    alias = TeacherSpec(provider="openai-compatible", model="m", base_url="http://x/v1")
    assert teacher_params(type("R", (), {"teacher": alias})())["provider"] == "openai_compat"


def test_shipped_backends_behave_as_their_facts_say(monkeypatch):
    """The facts are the only declaration: the classes built from them agree (batch API, key required)."""
    monkeypatch.setenv("SOME_KEY", "secret")
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    for info in providers():
        backend = make_backend(info.name, TeacherSpec(provider=info.name, model="m", api_key_env="SOME_KEY"), "m")
        assert isinstance(backend, BatchBackend) == info.batch, info.name
        for env in (None, "NO_SUCH_KEY"):
            spec = TeacherSpec(provider=info.name, model="m", api_key_env=env)
            if info.needs_key:  # no key named, or the named variable unset: refused before anything is sent
                with pytest.raises(HarnessError, match="API key|NO_SUCH_KEY"):
                    make_backend(info.name, spec, "m")
            else:
                make_backend(info.name, spec, "m")
    assert [i.name for i in providers() if not i.student] == ["oracle"]


def test_the_generic_runner_batches_through_the_backends_own_scheme(tmp_path, acme, monkeypatch):
    """Batch mode with a back-end the runner has never heard of: the lost submission is found by the back-end's
    own item count, and the results come back under its own ids."""
    monkeypatch.setenv("K", "secret")
    [recipe] = _load(tmp_path, "teacher: {provider: acme, model: gpt-4o, batch: true, api_key_env: K, "
                               "batch_poll_s: 0.01, max_retries: 2, retry_backoff_s: 0.01, "
                               "generation: {n: 2, max_tokens: 50}}")
    store = RunStore(tmp_path / "runs")
    ctx = StageContext("critique", {}, {}, store.stage("critique", "a" * 64), store, Console(file=io.StringIO()),
                       recipe)

    def parse(rec, result):
        if "Conclusion" not in result.text:
            raise Malformed("no verdict")
        return {"critiques": result.texts}

    job = teacher_job(ctx, lambda rec: chat([{"role": "user", "content": rec["prompt"]}],
                                            recipe.teacher.generation.model_dump()), parse)
    records = [{"id": f"r{i}", "prompt": f"question {i}"} for i in range(5)]
    out, stats = run_generation(ctx, records, job, "critique")
    [backend] = acme
    assert [r["status"] for r in out] == ["ok"] * 5
    assert all(r["critiques"] == ["batched 0. Conclusion: right", "batched 1. Conclusion: right"] for r in out)
    assert backend.submits == 1 and backend.found_with == [10]  # 5 requests x n=2: the back-end's count
    assert stats["cost_usd"] == pytest.approx(5 * PRICES["gpt-4o"].cost(100, 10, batch=True))
