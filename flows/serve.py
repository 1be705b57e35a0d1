"""`sprx serve`: the pipeline's Prefect deployments, on their schedules, served from one process.

Four deployments of the `run` flow (see flows/run.py):

=========================  ==========================  ============================================
deployment                 schedule (UK local time)    what it runs
=========================  ==========================  ============================================
``run/gp-nightly``         ``SPRX_SCHEDULE_GP``        EMIS and SystmOne, then build + publish if
                                                       outstanding (``if-loaded``, flows/run.py)
``run/ambulance-weekly``   ``SPRX_SCHEDULE_AMBULANCE`` ambulance, then build + publish if
                                                       outstanding
``run/vcse-frequent``      ``SPRX_SCHEDULE_VCSE``      VCSE sheets, then build + publish if
                                                       outstanding
``run/full``               none (run on demand)        every source, build and publish always
=========================  ==========================  ============================================

Runs never overlap: the serving process runs one flow run at a time (``limit=1``), each deployment
allows one run at a time (``concurrency_limit=1``), and every run holds the warehouse lock
(flows/lock.py), which also keeps out a `sprx run` started by hand. Runs that fall due while another
is going wait their turn.

The process talks to the Prefect server at ``PREFECT_API_URL`` (`prefect server start`). With none
set, it starts one itself (`local_prefect_server`): a `prefect server start` subprocess on a free port of
127.0.0.1, with its scheduler service, its database under ``$SPRX_HOME/prefect/`` and its log in
``$SPRX_HOME/logs/prefect-server.log``, stopped when serve stops. (The temporary server Prefect starts on
its own for a flow run does not run the scheduler, so schedules would never fire on it.)
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from prefect import serve as prefect_serve
from prefect.deployments.runner import EntrypointType
from prefect.schedules import Cron

from flows.run import run
from sprx.settings import Settings

# The local Prefect server's database and settings live here, under $SPRX_HOME, so run records
# survive a restart of serve and two homes never share them.
PREFECT_HOME_NAME = "prefect"
# Its log (uvicorn, the scheduler and other services), under $SPRX_HOME/logs/.
SERVER_LOG_NAME = "prefect-server.log"
# How often serve asks the starting server whether it is up, seconds.
HEALTH_POLL_SECONDS = 0.5
# How long a stopping server may take before it is killed, seconds.
STOP_GRACE_SECONDS = 20
# Linux prctl option: send the child a signal when its parent dies (so a killed serve leaves no server).
PR_SET_PDEATHSIG = 1


class ServerStartFailed(RuntimeError):
    """The local Prefect server did not come up; the message says why and where its log is."""


@dataclass(frozen=True)
class Deployment:
    """One scheduled (or on-demand) deployment of the `run` flow."""

    name: str
    sources: tuple[str, ...] | None
    cron: str | None
    build_when: str
    description: str


def deployments(settings: Settings) -> list[Deployment]:
    """The deployments `sprx serve` registers, with the schedules in force."""
    return [
        Deployment("gp-nightly", ("emis", "systmone"), settings.schedule_gp, "if-loaded",
                   "GP extracts (EMIS Web, SystmOne): ingest, then build and publish if anything loaded."),
        Deployment("ambulance-weekly", ("ambulance",), settings.schedule_ambulance, "if-loaded",
                   "Ambulance frequent-caller files: ingest, then build and publish if anything loaded."),
        Deployment("vcse-frequent", ("vcse",), settings.schedule_vcse, "if-loaded",
                   "VCSE attendance sheets: ingest, then build and publish if anything loaded."),
        Deployment("full", None, None, "always",
                   "Everything: ingest every source, build and publish. Not scheduled; run it on demand."),
    ]


def check_schedules(settings: Settings) -> None:
    """Raise ValueError naming the setting when a cron expression or the time zone is not valid."""
    try:
        ZoneInfo(settings.schedule_timezone)
    except (ValueError, ZoneInfoNotFoundError):
        raise ValueError(f"SPRX_SCHEDULE_TIMEZONE {settings.schedule_timezone!r} is not a time zone "
                         "(use a name such as Europe/London)") from None
    for deployment in deployments(settings):
        if deployment.cron is None:
            continue
        try:
            Cron(deployment.cron, timezone=settings.schedule_timezone)
        except ValueError as error:
            raise ValueError(f"schedule for {deployment.name} ({deployment.cron!r}, "
                             f"{settings.schedule_timezone}) is not valid: {error}") from None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (the operating system's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to stop it when the process that started it dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: serve still stops it on the way out
        pass


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        tail = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return " | ".join(line.strip() for line in tail)


@contextmanager
def local_prefect_server(home: Path, timeout_seconds: float) -> Iterator[str]:
    """Start `prefect server start` (API, UI and services, the scheduler among them) on a free port of
    127.0.0.1 for the block, and yield its API URL; wait up to `timeout_seconds` for it to answer.

    Its database is $SPRX_HOME/prefect/prefect.db, its output $SPRX_HOME/logs/prefect-server.log. It is
    stopped when the block ends, and (on Linux) also if this process is killed."""
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    prefect_home = home / PREFECT_HOME_NAME
    log_path = home / "logs" / SERVER_LOG_NAME
    prefect_home.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    environment = {name: value for name, value in os.environ.items() if name != "PREFECT_API_URL"}
    environment.update({
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "true",  # the service that turns schedules into runs
        "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "true",
        "PREFECT_UI_API_URL": api_url,
        "NO_COLOR": "1",
    })
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=environment, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent)
    try:
        deadline = time.monotonic() + timeout_seconds
        while not _healthy(api_url):
            if process.poll() is not None:
                raise ServerStartFailed(f"the local Prefect server stopped as it started (exit {process.returncode}); "
                                        f"see {log_path}: {_log_tail(log_path)}")
            if time.monotonic() >= deadline:
                raise ServerStartFailed(f"the local Prefect server did not answer within {timeout_seconds:g} s "
                                        f"(SPRX_PREFECT_STARTUP_TIMEOUT_SECONDS); see {log_path}")
            time.sleep(HEALTH_POLL_SECONDS)
        yield api_url
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """Stop the server's process group: SIGTERM, then SIGKILL after a grace period."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def describe_schedules(settings: Settings) -> list[str]:
    """One line per deployment: its name, schedule and what it runs."""
    return [f"  run/{d.name:<17} {('cron ' + repr(d.cron) + ' ' + settings.schedule_timezone) if d.cron else 'on demand':<38} "
            f"{', '.join(d.sources) if d.sources else 'all sources'}"
            for d in deployments(settings)]


def serve(settings: Settings, say: Callable[[str], None] = print) -> None:
    """Register the deployments and run their flow runs until interrupted: against PREFECT_API_URL when it
    is set, else against a local Prefect server started (and stopped) here."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    check_schedules(settings)
    configured = PREFECT_API_URL.value()
    if configured:
        say(f"sprx serve: using the Prefect server at {configured} (PREFECT_API_URL)")
        _serve(settings, say)
        return
    with local_prefect_server(settings.home, settings.prefect_startup_timeout_seconds) as api_url:
        say(f"sprx serve: started a local Prefect server with its scheduler at {api_url.removesuffix('/api')} "
            f"(log {settings.home / 'logs' / SERVER_LOG_NAME}); trigger a run with "
            f"PREFECT_API_URL={api_url} prefect deployment run run/full")
        os.environ["PREFECT_API_URL"] = api_url  # for the flow-run processes the runner starts
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            _serve(settings, say)


def _serve(settings: Settings, say: Callable[[str], None]) -> None:
    """Register the deployments with the current Prefect API and serve them until interrupted."""
    runner_deployments = [
        run.to_deployment(
            name=deployment.name,
            schedules=[Cron(deployment.cron, timezone=settings.schedule_timezone)] if deployment.cron else None,
            parameters={"sources": list(deployment.sources) if deployment.sources else None,
                        "build_when": deployment.build_when},
            concurrency_limit=1,
            description=deployment.description,
            tags=["sprx"],
            # by module (flows.run.run), so runs start from the installed package whatever the working folder
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        for deployment in deployments(settings)
    ]
    say("sprx serve: serving these deployments until Ctrl-C:")
    for line in describe_schedules(settings):
        say(line)
    prefect_serve(*runner_deployments, limit=1, print_starting_message=False)
