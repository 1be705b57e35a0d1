"""What a person sees when a command runs flows: a progress count and a summary, not Prefect's log.

`prepare_prefect` runs before Prefect is first imported by a command (`sprx ingest`, `build`, `run`,
`publish`, `demo`, `serve`): it gives Prefect's temporary server a generous start-up timeout (a loaded
machine starts it slowly) and turns colours off when the output is not a terminal. `quiet_prefect`
then sends Prefect's own log lines (and uvicorn's) to ``$SPRX_HOME/logs/sprx.log`` instead of the
console, unless ``--verbose`` (``SPRX_VERBOSE=1``). dbt's console output follows the same setting
(flows/build.py); its full log is always in ``$SPRX_HOME/dbt/logs/``.

`Progress` prints "n of N" counts while files load: one line rewritten in place on a terminal, a few
lines otherwise (at each quarter), so a log of a scheduled run stays short.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from sprx.settings import Settings

# The log file, under $SPRX_HOME/logs/, that Prefect's own lines go to unless --verbose.
LOG_NAME = "sprx.log"
# Prefect's setting for the temporary server's start-up timeout (its default, 20 s, is too short under load).
PREFECT_STARTUP_TIMEOUT = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
# Not a terminal: print progress at these fractions of the files only.
QUARTERS = (0.25, 0.5, 0.75, 1.0)


def is_terminal(stream: TextIO) -> bool:
    """True when the stream is a terminal (colours and in-place progress make sense)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def prepare_prefect(settings: Settings) -> None:
    """Before Prefect is imported: its temporary server's start-up timeout, and no colours off a terminal.

    SPRX_PREFECT_STARTUP_TIMEOUT_SECONDS wins; without it, a PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS
    already set is kept, else sprx's default applies."""
    if os.environ.get("SPRX_PREFECT_STARTUP_TIMEOUT_SECONDS") or not os.environ.get(PREFECT_STARTUP_TIMEOUT):
        os.environ[PREFECT_STARTUP_TIMEOUT] = str(int(settings.prefect_startup_timeout_seconds))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not is_terminal(sys.stderr):
        os.environ["PREFECT_LOGGING_COLORS"] = "false"
        os.environ.setdefault("NO_COLOR", "1")


def log_path(home: Path) -> Path:
    """Where Prefect's own log lines go unless --verbose."""
    return home / "logs" / LOG_NAME


def quiet_prefect(home: Path) -> Callable[[], None]:
    """Send Prefect's console log lines (flow and task runs, the temporary server, uvicorn) to
    $SPRX_HOME/logs/sprx.log instead of the terminal; returns a function that puts them back."""
    import prefect.main  # noqa: F401  (sets up Prefect's logging, which is then redirected)

    path = log_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)-7s | %(name)s - %(message)s"))
    loggers = [logging.getLogger()] + [logger for logger in logging.root.manager.loggerDict.values()
                                       if isinstance(logger, logging.Logger)]
    moved: list[tuple[logging.Logger, logging.Handler]] = []
    for logger in loggers:
        for existing in list(logger.handlers):
            console = type(existing).__name__ == "PrefectConsoleHandler" or (
                type(existing) in (logging.StreamHandler, ) or type(existing).__name__ == "_SafeStreamHandler"
            ) and getattr(existing, "stream", None) in (sys.stderr, sys.stdout)
            if console:
                logger.removeHandler(existing)
                logger.addHandler(handler)
                moved.append((logger, existing))

    def restore() -> None:
        for logger, existing in moved:
            logger.removeHandler(handler)
            logger.addHandler(existing)
        handler.close()

    return restore


class Progress:
    """"n of N" while files load, on stderr: rewritten in place on a terminal, at each quarter otherwise."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.terminal = is_terminal(self.stream)
        self.total = 0
        self.done = 0
        self.printed: set[float] = set()
        self.lock = threading.Lock()

    def begin(self, total: int) -> None:
        """A stage with `total` deliveries to look at."""
        with self.lock:
            self.total, self.done, self.printed = total, 0, set()
        if total:
            self._show(force=not self.terminal)

    def advance(self, count: int = 1) -> None:
        """`count` more deliveries looked at."""
        with self.lock:
            self.done = min(self.total, self.done + count)
        self._show()

    def end(self) -> None:
        """The stage is over: finish the in-place line."""
        if self.terminal and self.total:
            self.stream.write("\n")
            self.stream.flush()

    def _show(self, force: bool = False) -> None:
        text = f"  ingest: {self.done} of {self.total} deliveries"
        if self.terminal:
            self.stream.write("\r" + text)
        else:
            reached = [q for q in QUARTERS if self.total and self.done >= q * self.total and q not in self.printed]
            if not (force or reached):
                return
            self.printed.update(reached)
            self.stream.write(text + "\n")
        self.stream.flush()


# The progress shown by this process (the command line turns it on; flows run elsewhere show none).
_current: Progress | None = None


def show_progress(progress: Progress | None) -> None:
    """Turn progress counts on (a Progress) or off (None) for this process."""
    global _current
    _current = progress


def progress_begin(total: int) -> None:
    """Flows call this when they know how many deliveries they will look at."""
    if _current is not None:
        _current.begin(total)


def progress_advance(count: int = 1) -> None:
    """Flows call this after each delivery (loaded, skipped or not)."""
    if _current is not None:
        _current.advance(count)


def progress_end() -> None:
    """Flows call this when the deliveries are done."""
    if _current is not None:
        _current.end()
