"""The import-linter contracts in pyproject.toml hold (imports only go down, no cycles), and they do catch a
wrong arrow: a copy of the code with one upward import fails the same check."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ops", "gateway", "consumers", "store", "producers", "schemas", "domain", "chirp")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_upward_import_breaks_them(tmp_path: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    settings = tmp_path / "chirp" / "settings.py"
    settings.write_text(settings.read_text() + "\nimport consumers.runtime  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "chirp is not allowed to import consumers" in result.stdout
