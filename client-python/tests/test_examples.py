"""The examples run and print what they should."""

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_prefork(daemons):
    d = daemons("standalone")
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "prefork.py"), d.socket, "4", "200"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert sum("200 INCR" in line and "value 200" in line for line in lines) == 4, out.stdout
    assert "4/4 workers ok" in lines[-1]
