"""Open an HTML report in headless Chromium, check it renders without errors, and save a screenshot.

    python bench/report_screenshot.py runs/tiny-ablation/report.html -o report.png
    python bench/report_screenshot.py runs/tiny-ablation            # a run or matrix folder: its report.html
    python bench/report_screenshot.py --demo -o demo.png            # a report of the paper's published tables

Chromium runs with no sandbox, GPU, network chatter, component updates or first-run UI, in a fresh profile
folder. The check: the DOM Chromium built holds the results table and the expected number of charts, and the
console logged no error (Chromium's --enable-logging writes console messages to stderr). Exit 0 when all is well,
1 with the reasons otherwise; 2 when no Chromium is found (`apt-get install -y chromium`).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
         "--disable-extensions", "--mute-audio", "--enable-logging=stderr", "--v=0"]
CONSOLE_ERROR = re.compile(r"CONSOLE\(\d+\)\].*(Uncaught|Error|error)|Refused to|Failed to load|net::ERR_")


def find_chromium(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def demo_report(folder: Path) -> Path:
    from harness.report import build_table, to_html

    path = folder / "demo-report.html"
    path.write_text(to_html(build_table([], "paper-llama", references=["paper-llama"], bootstrap=0, versus=["cft"])))
    return path


def run_chromium(chromium: str, args: list[str], profile: Path, timeout: float) -> subprocess.CompletedProcess:
    cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def check(html_path: Path, png: Path, chromium: str, size: str, timeout: float) -> dict:
    url = html_path.resolve().as_uri()
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="cgd-chromium-") as tmp:
        dom = run_chromium(chromium, ["--virtual-time-budget=3000", "--dump-dom", url], Path(tmp) / "p1", timeout)
        shot = run_chromium(chromium, [f"--window-size={size}", "--virtual-time-budget=3000",
                                       f"--screenshot={png.resolve()}", url], Path(tmp) / "p2", timeout)
    html = html_path.read_text()
    expected_svgs = html.count("<svg")
    rendered = dom.stdout
    if dom.returncode != 0:
        problems.append(f"--dump-dom exited {dom.returncode}")
    for marker in ("<table", "</table>"):
        if marker not in rendered:
            problems.append(f"rendered DOM lacks {marker}")
    if rendered.count("<svg") != expected_svgs:
        problems.append(f"rendered DOM has {rendered.count('<svg')} charts, the file {expected_svgs}")
    errors = [line for line in (dom.stderr + shot.stderr).splitlines() if CONSOLE_ERROR.search(line)]
    problems += [f"console: {line.strip()}" for line in errors]
    if shot.returncode != 0 or not png.is_file() or png.stat().st_size < 1000:
        problems.append(f"--screenshot failed (exit {shot.returncode}): {shot.stderr[-500:]}")
    return {"html": str(html_path), "screenshot": str(png), "charts": expected_svgs,
            "tables": rendered.count("<table"), "ok": not problems, "problems": problems,
            "chromium": subprocess.run([chromium, "--version"], capture_output=True, text=True).stdout.strip()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", nargs="?", type=Path, help="report.html, or a run / matrix folder holding one")
    parser.add_argument("-o", "--out", type=Path, default=Path("report.png"), help="screenshot PNG")
    parser.add_argument("--size", default="1500,2600", help="window size WIDTH,HEIGHT")
    parser.add_argument("--chromium", help="Chromium binary (default: found on PATH)")
    parser.add_argument("--demo", action="store_true", help="render the paper-llama reference report instead")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    chromium = find_chromium(args.chromium)
    if chromium is None:
        print("no Chromium found; install it (apt-get install -y chromium) or pass --chromium", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="cgd-report-") as tmp:
        if args.demo:
            html = demo_report(Path(tmp))
        elif args.report is None:
            parser.error("give a report (or --demo)")
        else:
            html = args.report / "report.html" if args.report.is_dir() else args.report
        if not html.is_file():
            print(f"no report at {html}", file=sys.stderr)
            return 2
        result = check(html, args.out, chromium, args.size, args.timeout)
    print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
