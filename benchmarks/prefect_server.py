"""A Prefect server for a benchmark's commands, started before the clock: how a deployment runs them.

In production the flows run on a Prefect server that is already up (`prefect server start` beside `sprx serve`,
docs/operations.md). A command run with no `PREFECT_API_URL` instead starts Prefect's temporary server for
itself, about 10 to 15 s on the 2-core machine before any work, every time. The benchmarks measure both ways
(`--prefect server`, the default, or `--prefect temporary`) and say which.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent
# How long to wait for the server to answer its health check, seconds.
STARTUP_SECONDS = 300


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def prefect_server(home: Path, mode: str) -> Iterator[dict[str, str]]:
    """The environment for the benchmark's commands (this process's, Prefect's settings added): with `mode`
    "server", `PREFECT_API_URL` of a server started here (its PREFECT_HOME and log under `home`) and stopped on
    exit; with "temporary", no URL (each command starts Prefect's temporary server)."""
    env = {name: value for name, value in os.environ.items() if name != "PREFECT_API_URL"}
    env |= {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_HOME": str(home), "PREFECT_LOGGING_LEVEL": "WARNING"}
    if mode == "temporary":
        yield env
        return
    if mode != "server":
        raise ValueError(f"--prefect must be server or temporary, not {mode!r}")
    home.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    with open(home / "prefect-server.log", "wb") as log:
        server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the Prefect server did not start; see {home / 'prefect-server.log'}")
            time.sleep(1)
        yield env | {"PREFECT_API_URL": url}
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
