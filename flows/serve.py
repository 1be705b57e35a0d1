"""`sprx serve`: the pipeline's Prefect deployments, on their schedules, served from one process.

Four deployments of the `run` flow (see flows/run.py):

=========================  ==========================  ============================================
deployment                 schedule (UK local time)    what it runs
=========================  ==========================  ============================================
``run/gp-nightly``         ``SPRX_SCHEDULE_GP``        EMIS and SystmOne, then build + publish if
                                                       anything loaded
``run/ambulance-weekly``   ``SPRX_SCHEDULE_AMBULANCE`` ambulance, then build + publish if loaded
``run/vcse-frequent``      ``SPRX_SCHEDULE_VCSE``      VCSE sheets, then build + publish if loaded
``run/full``               none (run on demand)        every source, build and publish always
=========================  ==========================  ============================================

Runs never overlap: the serving process runs one flow run at a time (``limit=1``), each deployment
allows one run at a time (``concurrency_limit=1``), and every run holds the warehouse lock
(flows/lock.py), which also keeps out a `sprx run` started by hand. Runs that fall due while another
is going wait their turn.

The process talks to whatever Prefect API is configured: ``PREFECT_API_URL`` for a real server
(`prefect server start`), or, with none, a temporary local server that lives as long as the process.
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from prefect import serve as prefect_serve
from prefect.deployments.runner import EntrypointType
from prefect.schedules import Cron

from flows.run import run
from sprx.settings import Settings


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


def serve(settings: Settings) -> None:
    """Register the deployments and run their flow runs in this process until interrupted."""
    check_schedules(settings)
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
    prefect_serve(*runner_deployments, limit=1, print_starting_message=True)
