"""Running the scripts as a user runs them: ``python scripts/NAME.py ...`` from the repository root."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_script(*args, timeout=300):
    # PYTHONPATH: a script imports the fnet of this checkout, not whichever fnet is installed
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False, env={**os.environ, "PYTHONPATH": path})


def json_reports_on_devices(run, tmp_path, counts=("1", "2")) -> dict:
    """Run the script command ``run`` once per device count with ``--devices N --json FILE``: the
    reports by count (each run must succeed)."""
    reports = {}
    for n in counts:
        path = tmp_path / f"devices{n}.json"
        r = run_script(*run, "--devices", n, "--json", str(path))
        assert r.returncode == 0, r.stderr
        reports[n] = json.loads(path.read_text())
    return reports
