"""A dataset card (README.md) for one exported dataset: the Hub's YAML header, then what made it and what is in it."""

from __future__ import annotations

from typing import Any

from harness.cards import TAGS, front_matter, md_cell

HUB_LICENSES = {"mit", "apache-2.0", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "cc0-1.0", "odc-by", "llama3",
                "llama3.1", "other"}


def hub_license(license_: str | None) -> str:
    return license_ if license_ in HUB_LICENSES else "unknown"


def _dash(value: Any) -> str:
    return "—" if value in (None, "", {}, []) else md_cell(value)


def recipe_lines(f: dict[str, Any]) -> list[str]:
    recipe, teacher, student, critique, h = f["recipe"], f["teacher"], f["student"], f["critique"], f["harness"]
    commit = h.get("commit")
    commit_text = f"{commit[:12]}{' (uncommitted changes)' if h.get('dirty') else ''}" if commit else "unknown"
    return [
        f"| recipe | `{md_cell(recipe['name'])}` (run `{md_cell(f['run'])}`) |",
        f"| recipe file | {_dash(recipe.get('file'))} (sha256 {_dash(recipe.get('file_sha256'))}) |",
        f"| recipe fingerprint | `{recipe['config_fingerprint']}` |",
        f"| teacher | {_dash(teacher.get('provider'))} / {_dash(teacher.get('model'))} |",
        f"| student | {_dash(student.get('model'))} ({_dash(student.get('backend'))}) |",
        f"| critique style | {_dash(critique.get('style'))}, specificity {_dash(critique.get('specificity'))} |",
        f"| harness | cgd-harness {_dash(h.get('version'))}, commit {commit_text} |",
    ]


def source_lines(src: dict[str, Any]) -> list[str]:
    where = src.get("path")
    extra = [f"{k} {src[k]}" for k in ("name", "split", "revision", "processor", "limit") if src.get(k) is not None]
    return [f"| source dataset | {_dash(where)} ({_dash(src.get('kind'))}{'; ' + ', '.join(extra) if extra else ''}) |",
            f"| source licence | {_dash(src.get('license'))} |"]


def decontamination_lines(d: dict[str, Any] | None) -> list[str]:
    if not d:
        return ["Decontamination: not run for this dataset (no `decontaminate` stage in the run)."]
    dropped = " (removed before any request)" if d.get("mode") == "drop" else " (reported, kept)"
    lines = [f"Decontamination (mode `{d.get('mode')}`, {d.get('ngram')}-gram overlap and exact match against the "
             f"recipe's benchmarks): {d.get('contaminated', 0)} of {d.get('prompts')} prompts matched a benchmark "
             f"problem{dropped if d.get('contaminated') else ''}; {d.get('duplicates', 0)} exact duplicates.", ""]
    if d.get("benchmarks"):
        lines += ["| benchmark | hits | exact | checked |", "|---|---|---|---|"]
        lines += [f"| {md_cell(name)} | {b.get('hits', 0)} | {b.get('exact', 0)} | {_dash(b.get('status'))} |"
                  for name, b in d["benchmarks"].items()]
    return lines


def render_dataset_card(f: dict[str, Any], links: dict[str, str] | None = None) -> str:
    counts, verdicts, variant = f["counts"], f["verdicts"], f["variant"]
    meta = {"license": hub_license(f["source"].get("license")), "tags": [*TAGS, variant],
            "task_categories": ["text-generation"],
            "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train.jsonl"}]}]}
    if counts.get("examples") is not None:
        meta["size_categories"] = [_size_category(counts["examples"])]
    left = ", ".join(f"{n} {why}" for why, n in (counts.get("left_out") or {}).items()) or "none"
    if verdicts:
        total = sum(verdicts.values()) or 1
        mix = ", ".join(f"{v}: {n} ({100 * n / total:.0f}%)" for v, n in verdicts.items())
    else:
        mix = "not applicable (this dataset's rows carry no teacher critique)"
    lines = [
        front_matter(meta),
        f"# {f['run']}: {variant} dataset",
        "",
        f"The `{variant}` training set of the cgd-harness run `{f['run']}` (critique-guided distillation and its "
        "baselines), in Axolotl's chat format: one row per example, `{\"id\", \"messages\": [{\"role\", "
        "\"content\", \"training\"}]}`; only the turn with `training: true` (the target) is trained on. `id` traces "
        "a row back to its source prompt, the student's draft and the teacher's critique.",
        "",
        "```python",
        "from datasets import load_dataset",
        f"rows = load_dataset(\"{links.get('self', '.') if links else '.'}\", split=\"train\")",
        "```",
        "",
        "## Contents",
        "",
        "| | |", "|---|---|",
        f"| examples | {_dash(counts.get('examples'))} |",
        f"| source records | {_dash(counts.get('source_records'))} |",
        f"| left out | {md_cell(left)} |",
        f"| over sequence_len | {_dash(counts.get('overlong'))} |",
        f"| teacher verdicts on the drafts | {md_cell(mix)} |",
        "",
        "## How it was made",
        "",
        "| | |", "|---|---|",
        *recipe_lines(f),
        *source_lines(f["source"]),
        "",
        "## Decontamination",
        "",
        *decontamination_lines(f.get("decontamination")),
        "",
        "## Licence",
        "",
        f"The prompts and reference answers come from the source dataset (licence: {f['source'].get('license')}); "
        "the drafts come from the student and the critiques and refinements from the teacher, whose terms of use "
        "apply as well.",
        "",
    ]
    return "\n".join(lines)


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"
