"""Run `sprx` with one fault injected: ``python -m tests.faults.inject POINT -- ARGS...``.

POINT names where the process kills itself with SIGKILL (what `kill -9` or a power cut does): nothing
after it runs, no handler, no `finally`. The faults are put in from outside, by wrapping the functions
and system calls the pipeline goes through, so the product carries no test hooks:

- ``before:STAGE`` / ``after:STAGE``: a stage boundary of `sprx run` (STAGE: ingest, build, publish);
- ``staged:N``: inside the Nth file's load transaction, rows staged and its audit row written, not committed;
- ``committed:N``: the Nth load transaction committed (a file's, or a batch's of SystmOne deltas or ambulance
  files), its files not yet archived;
- ``marked:N``: the Nth recording of archive paths (a group of files', or a committed batch's) done, none of them moved;
- ``archived:N``: the Nth file renamed into archive/, not yet checked, stamped or made read-only;
- ``recorded:STAGE``: a stage's work done, its completion not yet recorded in audit.pipeline_runs;
- ``dbt-node:N``: the Nth dbt node (seed, model or test) of the build has finished;
- ``published:N``: the Nth rename into published/ has happened;
- ``publish-task:NAME``: the publish flow's task NAME has returned (for example ``export_release``).

A point that is never reached leaves the run to finish; the caller sees exit code 0 instead of -9.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def die() -> None:
    """Stop at once, as kill -9 does."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _nth(count: int):
    """A callable that dies on its `count`th call."""
    seen = [0]

    def tick() -> None:
        seen[0] += 1
        if seen[0] == count:
            die()

    return tick


def _wrap_attribute(owner, name: str, *, before=None, after=None, when=lambda *a, **k: True) -> None:
    original = getattr(owner, name)

    def wrapped(*args, **kwargs):
        if before is not None and when(*args, **kwargs):
            before()
        result = original(*args, **kwargs)
        if after is not None and when(*args, **kwargs):
            after()
        return result

    setattr(owner, name, wrapped)


def install(point: str) -> None:
    """Arrange for this process to die at `point`."""
    kind, _, argument = point.partition(":")
    home = Path(os.environ["SPRX_HOME"]).resolve()
    if kind in ("before", "after"):
        import flows.run

        _wrap_attribute(flows.run, argument, **{kind: die})
    elif kind == "staged":
        from flows.load import Loader

        _wrap_attribute(Loader, "_record", after=_nth(int(argument)),
                        when=lambda self, delivery, result, **kw: kw.get("file_id") is not None)
    elif kind == "committed":
        from flows.load import Loader

        _wrap_attribute(Loader, "commit", after=_nth(int(argument)))
    elif kind == "marked":
        from flows.load import Loader

        _wrap_attribute(Loader, "mark_archived", after=_nth(int(argument)))
    elif kind == "archived":
        tick = _nth(int(argument))
        _wrap_attribute(os, "replace", after=tick,
                        when=lambda source, target, *a, **k: (home / "archive") in Path(target).resolve().parents)
    elif kind == "published":
        tick = _nth(int(argument))
        published = home / "published"
        _wrap_attribute(os, "replace", after=tick, when=lambda source, target, *a, **k: published in (
            Path(target).resolve(), *Path(target).resolve().parents))
    elif kind == "recorded":
        import flows.ingest

        _wrap_attribute(flows.ingest, "record_run", before=die,
                        when=lambda settings, run_id, started, status, *a, **k: status == "completed"
                        and k.get("stage", "ingest") == argument)
    elif kind == "publish-task":
        import flows.publish

        _wrap_attribute(flows.publish, argument, after=die)
    elif kind == "dbt-node":
        import dbt.cli.main

        tick, runner = _nth(int(argument)), dbt.cli.main.dbtRunner

        def on_event(event) -> None:
            if event.info.name == "NodeFinished":
                tick()

        class FaultyRunner(runner):
            def __init__(self, manifest=None, callbacks=None) -> None:
                super().__init__(manifest=manifest, callbacks=[*(callbacks or []), on_event])

        dbt.cli.main.dbtRunner = FaultyRunner
    else:
        raise SystemExit(f"unknown fault point {point!r}")


def main(argv: list[str]) -> int:
    point, separator, *arguments = argv
    if separator != "--":
        raise SystemExit("usage: python -m tests.faults.inject POINT -- SPRX_ARGUMENTS")
    install(point)
    from sprx.cli import main as sprx

    return sprx(arguments)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
