"""The import layering, as CI checks it: no circle of imports anywhere in matchlab (pyproject's import-linter contract)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_TIMEOUT_S = 120


def lint_imports(cwd: Path, config: Path) -> subprocess.CompletedProcess:
    """import-linter's command, from the interpreter's own environment (pinned in pyproject's dev extra)."""
    command = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(command), "--config", str(config), "--no-cache"], cwd=cwd, capture_output=True,
                          text=True, timeout=LINT_TIMEOUT_S, check=False)


def test_no_import_cycle_in_matchlab():
    proc = lint_imports(ROOT, ROOT / "pyproject.toml")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 kept, 0 broken" in proc.stdout


def test_the_contract_fails_on_a_circle(tmp_path):
    """The same contract over a tiny package whose two subpackages import each other."""
    pkg = tmp_path / "circular"
    for sub, other in (("low", "high"), ("high", "low")):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text(f"from circular.{other} import thing as other\nthing = 1\n")
    (pkg / "__init__.py").write_text("")
    config = tmp_path / "pyproject.toml"
    contract = (ROOT / "pyproject.toml").read_text().split("[tool.importlinter]", 1)[1]
    config.write_text("[tool.importlinter]" + contract.replace('"matchlab"', '"circular"'))
    proc = lint_imports(tmp_path, config)
    assert proc.returncode == 1 and "BROKEN" in proc.stdout, proc.stdout + proc.stderr
