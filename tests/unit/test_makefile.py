"""Every target `make help` lists exists (`make -n` plans it), and so does every `make X` the docs mention."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=60, check=False)


def listed() -> list[str]:
    shown = make("--no-print-directory", "help")
    assert shown.returncode == 0, shown.stderr
    return [line.split()[0] for line in shown.stdout.splitlines() if line.strip()]


def test_every_listed_target_exists() -> None:
    targets = listed()
    assert {"install", "shell", "run", "test", "lint", "bench", "docs"} <= set(targets)
    for target in targets:
        planned = make("-n", target)
        assert planned.returncode == 0, f"make -n {target}: {planned.stderr}"


def test_phony_targets_and_documented_ones_are_listed() -> None:
    makefile = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", makefile, flags=re.M)
    assert phony is not None
    docs = "\n".join(p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
    mentioned = set(re.findall(r"(?:^|`)make ([a-z][a-z-]*)", docs, flags=re.M))  # commands, not prose
    assert set(phony.group(1).split()) | mentioned <= set(listed())


def test_bench_installs_wrk_when_missing() -> None:
    assert 'apt_install("wrk")' in make("-n", "bench").stdout
