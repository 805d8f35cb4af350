"""The tested matrix (server x frontend x mode), recorded from a test run and written into the README.

conftest.py feeds every test report of a stack-parametrised test (its id in brackets names a stack of
support.stacks) to :class:`Recorder`, which writes test-output/matrix.json at the end of the session.
``python tests/support/matrix.py`` renders that run as a Markdown table between the README's markers.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from support.stacks import API_STACKS, BROWSER_STACKS, Stack  # noqa: E402

OUT = ROOT / "test-output" / "matrix.json"
START, END = "<!-- matrix:start -->", "<!-- matrix:end -->"
STACK_IDS = {s.id: s for s in API_STACKS + BROWSER_STACKS + [Stack("0.3.75")]}  # the last: the Manager install


class Recorder:
    def __init__(self):
        self.rows: dict[str, dict] = {}

    def add(self, nodeid: str, outcome: str | None, seconds: float) -> None:
        """One phase of a test: its outcome if it counts (None: only its time), and its duration."""
        params = nodeid[nodeid.rfind("["):] if nodeid.endswith("]") else ""
        stack = next((sid for sid in sorted(STACK_IDS, key=len, reverse=True)  # "...-vue" before its prefix
                      if re.search(rf"[\[-]{re.escape(sid)}[\]-]", params)), None)
        if "test_manager_install" in nodeid:
            stack = "0.3.75"
        if not stack:
            return
        kind = "browser" if "/browser/" in nodeid else "manager install" if stack == "0.3.75" else "api"
        row = self.rows.setdefault(f"{kind} {stack}", {"kind": kind, "stack": stack, "passed": 0, "failed": 0,
                                                       "skipped": 0, "seconds": 0.0})
        if outcome:
            row[outcome] = row.get(outcome, 0) + 1
        row["seconds"] += seconds

    def write(self) -> None:
        if not self.rows:
            return
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "rows": list(self.rows.values())}, indent=1))


def table(record: dict) -> str:
    lines = [f"Tested on {record['date']} (`bash .ci/run`; times are this machine's, 2 CPU cores):", "",
             "| tests | server | frontend | node mode | passed | skipped | failed | time |",
             "|---|---|---|---|---|---|---|---|"]
    for row in sorted(record["rows"], key=lambda r: (r["kind"], r["stack"])):
        s = STACK_IDS[row["stack"]]
        front = s.frontend or ("its own (web/ of 2024)" if s.server == "2024" else "its own (1.32.9)")
        lines.append(f"| {row['kind']} | ComfyUI {s.server} | {front} | {'Nodes 2.0' if s.vue else 'classic'} | "
                     f"{row['passed']} | {row['skipped']} | {row['failed']} | {row['seconds']:.0f} s |")
    return "\n".join(lines)


def update_readme(record: dict) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    a, b = text.index(START) + len(START), text.index(END)
    readme.write_text(text[:a] + "\n" + table(record) + "\n" + text[b:])


if __name__ == "__main__":
    update_readme(json.loads(OUT.read_text()))
    print(table(json.loads(OUT.read_text())))
