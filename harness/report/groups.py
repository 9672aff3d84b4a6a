"""How benchmarks are named and grouped in tables, following the CGD paper's layout.

The paper's LLaMA and S1.1 tables put MATH500, Minerva, GSM8K, OlympiadBench and AMC23 in a first group with its
average ("AvgG1") and TheoremQA, GPQA and MMLU-Pro in a second ("AvgG2"); the Qwen table adds AIME24 to the maths
group. The paper's GPQA is the generative 5-shot chain of thought (suite gpqa_cot, `gpqa_diamond_cot`, "GPQA (CoT)");
lm-eval's log-likelihood 5-shot task (suite general, `gpqa_diamond`, "GPQA") is another protocol with its own
column. Out-of-domain benchmarks (IFEval, MUSR, TruthfulQA, BBH, HumanEval) are a third group. Any other benchmark
(the tiny world's, a custom task) falls in "other". A group shows an average column when the table holds at least
two of its benchmarks; the average is over the benchmarks the table holds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GroupSpec:
    id: str
    label: str
    benchmarks: tuple[str, ...]


GROUPS: tuple[GroupSpec, ...] = (
    GroupSpec("math", "Math", ("math500", "minerva_math", "gsm8k", "olympiadbench", "amc23", "aime24", "aime25")),
    GroupSpec("general", "General", ("theoremqa", "gpqa_diamond_cot", "gpqa_diamond", "mmlu_pro")),
    GroupSpec("ood", "Out-of-domain", ("ifeval", "musr", "truthfulqa", "bbh", "humaneval", "humaneval_plus", "mbpp",
                                       "mbpp_plus")),
)
OTHER = GroupSpec("other", "Other", ())
# A reference row may carry a published average over benchmarks the source does not list (e.g. the README's
# learning-rate table); it shows in this group's average column.
OVERALL = GroupSpec("overall", "Overall", ())

DISPLAY = {
    "math500": "MATH500", "minerva_math": "Minerva", "gsm8k": "GSM8K", "olympiadbench": "OlympB", "amc23": "AMC23",
    "aime24": "AIME24", "aime25": "AIME25", "theoremqa": "TheoremQA", "gpqa_diamond": "GPQA",
    "gpqa_diamond_cot": "GPQA (CoT)", "mmlu_pro": "MMLU-Pro",
    "ifeval": "IFEval", "musr": "MUSR", "truthfulqa": "TruthfulQA", "bbh": "BBH", "humaneval": "HumanEval",
    "humaneval_plus": "HumanEval+", "mbpp": "MBPP", "mbpp_plus": "MBPP+",
}


# Where a table holds the paper's protocol of a benchmark, another protocol of it is shown apart (in "other"), so
# the group average is over the paper's benchmarks only (AvgG2 = TheoremQA, GPQA CoT, MMLU-Pro).
SUPERSEDED_BY = {"gpqa_diamond": "gpqa_diamond_cot"}


def group_in(benchmark: str, present: set[str]) -> GroupSpec:
    """`group_of`, except that a benchmark whose paper protocol is also in the table goes to "other"."""
    base = benchmark.split("/")[0]
    if SUPERSEDED_BY.get(base) in {b.split("/")[0] for b in present}:
        return OTHER
    return group_of(benchmark)


def display_name(benchmark: str) -> str:
    return DISPLAY.get(benchmark, benchmark)


def group_of(benchmark: str) -> GroupSpec:
    base = benchmark.split("/")[0]
    return next((g for g in GROUPS if base in g.benchmarks), OTHER)


def order_key(benchmark: str) -> tuple[int, int, str]:
    """Paper order: groups in GROUPS order, benchmarks in their group's order, then others by first appearance."""
    group = group_of(benchmark)
    if group is OTHER:
        return (len(GROUPS), 0, "")
    base = benchmark.split("/")[0]
    return (GROUPS.index(group), group.benchmarks.index(base), benchmark)


def average_id(group_id: str) -> str:
    return f"avg:{group_id}"
