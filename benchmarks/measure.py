"""Run a command and report its wall time and peak memory (max RSS of the child), as JSON.

    python benchmarks/measure.py -- sprx sample --out /tmp/ics --people 1500000 ...
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def measure(command: list[str]) -> dict:
    """Wall seconds, peak resident memory in MiB and exit code of one command."""
    began = time.monotonic()
    completed = subprocess.run(command, check=False)
    seconds = time.monotonic() - began
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"command": command, "seconds": round(seconds, 1), "peak_mib": round(peak_kib / 1024),
            "exit_code": completed.returncode}


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if arguments[:1] == ["--"]:
        arguments = arguments[1:]
    if not arguments:
        raise SystemExit("usage: python benchmarks/measure.py -- COMMAND [ARG ...]")
    result = measure(arguments)
    print(json.dumps(result))
    raise SystemExit(result["exit_code"])
