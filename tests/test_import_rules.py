"""The house's import rules ([tool.importlinter] in pyproject.toml), checked by import-linter.

Runtimes (actors/runtime, workers/runtime), the platform, the HTTP helpers and the socket transport
import no domain; no domain imports server.realtime (fan-out and presence reach it through the
protocols of server/context.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RULES = ("Runtimes and the platform import no domain", "No domain imports the realtime transport")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                           "lint_imports_command()", "--no-cache"],
                          cwd=root, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_every_import_rule_is_kept() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    for rule in RULES:
        assert f"{rule} KEPT" in result.stdout, result.stdout


def test_a_domain_importing_the_transport_breaks_the_rules(tmp_path: Path) -> None:
    """The rules can fail: a copy of the code where a domain module imports fan-out is refused."""
    copy = tmp_path / "copy"
    copy.mkdir()
    for top in ("server", "actors", "workers"):
        subprocess.run(["cp", "-r", str(ROOT / top), str(copy / top)], check=True)
    (copy / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    stats = copy / "server" / "analytics" / "stats.py"
    stats.write_text("from server.realtime import fanout  # noqa: F401\n" + stats.read_text())
    result = _lint(copy)
    assert result.returncode != 0
    assert "server.analytics.stats -> server.realtime.fanout" in result.stdout, result.stdout
