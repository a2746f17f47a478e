"""Run a piece of Python in a fresh process and read what it printed last (JSON): how the
memory guards measure one step's peak RSS alone.

The child reads its peak from /proc/self/status (VmHWM), not from getrusage's ru_maxrss:
Python starts a child with vfork and exec, and Linux carries the parent's peak over into the
child's ru_maxrss, so a 6 M-row copy measured 1,345 MB "growth" under a 1.5 GB parent and
245 MB on its own."""

from __future__ import annotations

import json
import subprocess
import sys

RESIDENT_KB = '''
def resident_kb(field: str) -> int:
    """VmRSS: resident now; VmHWM: the peak of this process image (KB)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))
'''


def run_in_a_child(code: str, *args: str, timeout: float = 300) -> dict:
    """``code`` may call ``resident_kb("VmRSS")`` and ``resident_kb("VmHWM")``; it prints its
    result as JSON on its last line of output."""
    child = subprocess.run([sys.executable, "-c", RESIDENT_KB + code, *args], capture_output=True, text=True, timeout=timeout)
    assert child.returncode == 0, child.stderr[-2000:]
    return json.loads(child.stdout.strip().splitlines()[-1])
