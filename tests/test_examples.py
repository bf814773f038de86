"""The bundled examples and `make demo`'s script do what the README promises."""

from __future__ import annotations

import json
import mailbox
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
GOOD = ["2027-02-10-research-day", "2027-02-10-travel-booking"]
BAD = ["2027-01-20-printer-news", "2027-07-06-summer-party"]


def test_two_examples_pass_and_two_show_problems() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "checks.cli", "check", "--root", str(PROJECT / "examples"), "--submitted", "2027-01-11",
         "--format", "json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    errors = {m["id"]: m["errors"] for m in json.loads(done.stdout)["mailings"]}
    assert done.returncode == 1
    assert [i for i in sorted(errors) if errors[i] == 0] == GOOD
    assert [i for i in sorted(errors) if errors[i] > 0] == BAD


@pytest.mark.skipif(not (BIN / "mailings").exists(), reason="needs the installed mailings command")
def test_demo_checks_merges_sends_once_and_previews(tmp_path: Path) -> None:
    shutil.copytree(PROJECT / "examples", tmp_path / "examples")
    done = subprocess.run(
        ["sh", "examples/demo.sh", str(BIN)], cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr
    assert [line for line in lines if line.startswith(("merged ", "rejected "))] == [
        f"rejected {BAD[0]}",
        f"merged   {GOOD[0]}",
        f"merged   {GOOD[1]}",
        f"rejected {BAD[1]}",
    ]
    assert sum(line.endswith("; complete") for line in lines) == 2
    assert "nothing to do for 2 other mailings (2 sent)" in lines
    outbox = mailbox.Maildir(tmp_path / "build" / "demo" / "outbox", create=False)
    # 5,900 recipients in batches of 100 and 740 in batches of 100: each batch once, none twice.
    assert len(outbox) == 59 + 8
    assert "X-Mailing-Id: 2027-02-10-travel-booking" in lines
