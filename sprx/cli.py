"""The `sprx` command line.

Each subcommand is a small function that parses its arguments, does one job and returns an exit
code: 0 when the job completed, 1 when it failed, 2 for arguments that make no sense. Errors are
one line on stderr, never a traceback, and never contain a patient identifier.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sprx import __version__
from sprx.portal.cli import add_parser as add_portal_parser
from sprx.permissions import private_dir, private_file
from sprx.settings import SAMPLE_FEEDS_DIR, SettingsError, get_settings

# Arguments used to generate the committed sample_feeds/ (tests regenerate it byte for byte).
SAMPLE_FEEDS_ARGS = ("--people", "3000", "--seed", "20261122", "--start", "2022-11-01", "--end", "2026-10-31")


class UsageError(Exception):
    """Arguments that make no sense: one line for the user, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block), exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; use YYYY-MM-DD") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 0.2:
        raise argparse.ArgumentTypeError(f"must be between 0 and 0.2 (got {value})")
    return value


def _sample_parser(subparsers) -> None:
    from sprx.synthetic import Parameters

    defaults = Parameters()
    parser = subparsers.add_parser(
        "sample",
        help="write a synthetic ICS as the four feeds, with truth.json",
        description=(
            "Write a deterministic synthetic ICS (Trafford practices and postcodes) as EMIS, SystmOne, "
            "ambulance and VCSE feeds in the landing layout, plus truth.json: the true effect, the counts "
            "the warehouse should find, and every injected fault. The same arguments give the same bytes."
        ),
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to create (must not exist or be empty)")
    parser.add_argument("--people", type=_positive_int, default=defaults.people,
                        help=f"people registered at the start (default {defaults.people})")
    parser.add_argument("--seed", type=int, default=defaults.seed, help=f"random seed (default {defaults.seed})")
    parser.add_argument("--start", type=_date, default=defaults.start,
                        help=f"first delivery date, YYYY-MM-DD (default {defaults.start})")
    parser.add_argument("--end", type=_date, default=defaults.end,
                        help=f"last delivery date, YYYY-MM-DD (default {defaults.end})")
    parser.add_argument("--error-rate", type=_rate, default=defaults.error_rate,
                        help=f"share of rows with an injected fault, 0 to 0.2 (default {defaults.error_rate})")
    parser.add_argument("--systmone-every", type=_positive_int, default=defaults.systmone_every_days,
                        help=f"days between SystmOne delta extracts; 1 = nightly (default {defaults.systmone_every_days})")
    parser.add_argument("--ambulance-every", type=_positive_int, default=defaults.ambulance_every_days,
                        help="days between ambulance incident files, 1 to 28 (each covers the 28 days before it; "
                             f"default {defaults.ambulance_every_days}, weekly)")
    parser.add_argument("--emis-every", type=_positive_int, default=defaults.emis_every_days,
                        help=f"days between kept EMIS full-refresh exports (default {defaults.emis_every_days})")
    parser.add_argument("--following-day", action="store_true",
                        help="make --end one night's deliveries of every feed in the same world (EMIS exports on "
                             "--end and the day before, SystmOne deltas on both, an ambulance file on --end, every "
                             "VCSE service's sheet of --end's month: choose --end on the 1st of a month); "
                             "truth.json lists them under following_day, so a benchmark can hold them back")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it holds files")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    parser.set_defaults(handler=cmd_sample)


def cmd_sample(args: argparse.Namespace) -> int:
    """Generate the synthetic feeds."""
    from sprx.synthetic import Parameters, generate
    from sprx.synthetic.generate import OutputError

    params = Parameters(
        people=args.people, seed=args.seed, start=args.start, end=args.end, error_rate=args.error_rate,
        systmone_every_days=args.systmone_every, emis_every_days=args.emis_every, following_day=args.following_day,
        ambulance_every_days=args.ambulance_every,
    )
    try:
        params.check()
    except ValueError as error:
        raise UsageError(str(error)) from None
    began = time.monotonic()
    progress = None if args.quiet else (lambda message: print(f"  {message}", file=sys.stderr))
    try:
        truth = generate(args.out, params, overwrite=args.overwrite, progress=progress)
    except OutputError as error:
        raise UsageError(str(error)) from None
    print(summarise_sample(args.out, truth, time.monotonic() - began))
    return 0


def summarise_sample(folder: Path, truth: dict, seconds: float | None = None) -> str:
    """A short plain-text summary of a generated feed folder and its truth."""
    files: dict[str, int] = {}
    for path in _deliveries_in_folder(folder):
        relative = path.relative_to(folder).parts
        family = "/".join(relative[:2]) if relative[0] == "gp" else relative[0]
        files[family] = files.get(family, 0) + 1
    counts = truth["counts"]
    faults = truth["injected_faults"]["rows"]
    effect = truth["true_effect"]["gp_consultations_365d"]
    naive = truth["naive_before_after"]["gp_consultations_365d"]
    lines = [
        f"Synthetic ICS in {folder}" + (f" ({seconds:.1f} s)" if seconds is not None else ""),
        "  deliveries: " + ", ".join(f"{family} {count}" for family, count in sorted(files.items())),
        f"  people: {counts['people_simulated']} simulated, {counts['registered_at_end']} registered at the end",
        f"  referral episodes {counts['referral_episodes']}, declined {counts['declined']}, "
        f"engaged {counts['engaged']}, sustained {counts['sustained']}",
        f"  frequent callers {counts['frequent_callers']} ({counts['frequent_callers_referred']} referred), "
        f"VCSE attendances {counts['vcse_attendances']}",
        f"  true effect on GP consultations in 365 days: {effect['expected_change_per_referral']} per referral; "
        f"naive before/after: {naive['mean_after_minus_before']}",
        f"  injected faults: {len(faults)} faults in {len({(f['file'], f['row_number']) for f in faults})} rows "
        "(a row can carry two; each faulty row should be quarantined) " + json.dumps(truth["injected_faults"]["by_kind"]),
    ]
    return "\n".join(lines)


def _demo_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the main job on the committed sample feeds: land, ingest, build and publish, then summarise",
        description=(
            "Run on the embedded default: copy sample_feeds/ into the landing folder of $SPRX_HOME "
            "(default ./data), then run the main job (`sprx run`): ingest it, build the warehouse with dbt "
            "(every test run) and publish the analysts' copy to $SPRX_HOME/published/; end with what arrived, "
            "loaded, was quarantined and was built, and where the published copy is. Without "
            "SPRX_PSEUDONYMISATION_KEY the demo creates a local key file ($SPRX_HOME/pseudonymisation.key), "
            "which later commands on the same home find and name."
        ),
    )
    _flow_options(parser)
    parser.set_defaults(handler=cmd_demo)


def _deliveries_in_folder(folder: Path) -> list[Path]:
    """The deliveries of a feed folder tree: each file, except that a SystmOne folder is one delivery."""
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).parts
        if relative[:2] == ("gp", "systmone") and len(relative) == 3 and path.is_dir():
            found.append(path)
        elif path.is_file() and not (relative[:2] == ("gp", "systmone") and len(relative) > 3) \
                and path.name not in ("truth.json", "README.md"):
            found.append(path)
    return found


def land_sample(landing: Path, archive: Path) -> int:
    """Copy the sample's deliveries into landing/, except those already there or in archive/; how many."""
    private_dir(landing)  # the sample's (synthetic) identifiers are treated like real ones: owner-only
    landed = 0
    for source in _deliveries_in_folder(SAMPLE_FEEDS_DIR):
        relative = source.relative_to(SAMPLE_FEEDS_DIR)
        target = landing / relative
        if target.exists() or (archive / relative).exists():
            continue
        private_dir(target.parent)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
        private_file(target)
        landed += 1
    return landed


def cmd_demo(args: argparse.Namespace) -> int:
    """Land the committed sample feeds, then ingest, build and publish them, and summarise."""
    settings = get_settings()
    truth_path = SAMPLE_FEEDS_DIR / "truth.json"
    if not truth_path.exists():
        print(f"sprx demo: the sample feeds are missing ({SAMPLE_FEEDS_DIR}); run from a full checkout",
              file=sys.stderr)
        return 1
    landing = settings.landing_dir
    landed = land_sample(landing, settings.home / "archive")
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    print(f"Landed {landed} new deliveries (a file, or a SystmOne folder) from {SAMPLE_FEEDS_DIR} into {landing}")
    print(summarise_sample(SAMPLE_FEEDS_DIR, truth))
    from flows.pseudonymise import ensure_demo_key

    demo_settings = ensure_demo_key(settings)
    if demo_settings.pseudonymisation_key != settings.pseudonymisation_key:
        os.environ["SPRX_PSEUDONYMISATION_KEY"] = demo_settings.pseudonymisation_key or ""
    code = run_pipeline("demo", None, "always")
    if code == 0:
        print(f"Demo done: analysts open {settings.published_dir / 'analytics.duckdb'} (read-only), or the Parquet "
              f"and CSV files beside it; `sprx status` shows every feed.")
    return code


def _ingest_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "ingest",
        help="landing → raw: parse, validate, pseudonymise and load new files, with full accounting",
        description=(
            "Take every new file in $SPRX_HOME/landing (or the given paths) into the pipeline's warehouse. "
            "Each file loads whole or not at all; rows that break their contract are quarantined in "
            "audit.rejected_rows with a reason; a file already loaded is not loaded again. "
            "Needs SPRX_PSEUDONYMISATION_KEY."
        ),
    )
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                        help="files or SystmOne folders under landing/ (default: everything new)")
    parser.add_argument("--source", action="append", choices=("gp", "emis", "systmone", "ambulance", "vcse"),
                        help="only these sources (repeatable; gp = emis and systmone)")
    parser.add_argument("--accept", action="append", default=[], metavar="FILE",
                        help="release a held EMIS export (path relative to landing/) and load it")
    parser.add_argument("--reprocess", action="store_true",
                        help="rebuild the raw zone and audit tables from archive/ (and landing/) in a new warehouse "
                             "file, swapped in only when complete; then run sprx build --full-refresh")
    _flow_options(parser)
    parser.set_defaults(handler=cmd_ingest)


def _sources(chosen: list[str] | None) -> tuple[str, ...]:
    from flows.load import SOURCES

    if not chosen:
        return SOURCES
    expanded = {name for item in chosen for name in (("emis", "systmone") if item == "gp" else (item,))}
    return tuple(source for source in SOURCES if source in expanded)


def _flow_options(parser: argparse.ArgumentParser) -> None:
    """Options of every command that runs Prefect flows."""
    parser.add_argument("--verbose", action="store_true",
                        help="print Prefect's and dbt's own log lines too (by default they go to "
                             "$SPRX_HOME/logs/sprx.log and $SPRX_HOME/dbt/logs/; SPRX_VERBOSE=1 does the same)")
    parser.set_defaults(runs_flows=True)


def _find_key(command: str) -> str | None:
    """Make sure a usable key is in force for a command that ingests; None, or the one line saying what to do.

    Without SPRX_PSEUDONYMISATION_KEY, the demo's key file in $SPRX_HOME is used, and named."""
    from flows.pseudonymise import DEMO_KEY_FILE, load_key

    settings = get_settings()
    demo_key = settings.home / DEMO_KEY_FILE
    if not settings.pseudonymisation_key:
        if not demo_key.is_file():
            return (f"sprx {command}: SPRX_PSEUDONYMISATION_KEY is not set: export a secret of at least 32 "
                    "characters held outside the home folder (docs/operations.md, \"The pseudonymisation key\"), "
                    "or run `sprx demo` for a throwaway one")
        os.environ["SPRX_PSEUDONYMISATION_KEY"] = demo_key.read_text(encoding="utf-8").strip()
        print(f"sprx {command}: using the demo's key file {demo_key} (SPRX_PSEUDONYMISATION_KEY is not set; "
              "never use it for real data)", file=sys.stderr)
    try:
        load_key(get_settings())
    except Exception as error:  # a missing, short or weak key: the message says which, never the key
        return f"sprx {command}: {error}"
    return None


def _check_landing(command: str) -> str | None:
    """None when the landing folder exists, else one line saying where feeds are expected."""
    from flows.ingest import SOURCE_FOLDERS

    landing = get_settings().landing_dir
    if landing.is_dir():
        return None
    folders = ", ".join(f"landing/{folder}" + ("/<service>" if name == "vcse" else "")
                        for name, folder in SOURCE_FOLDERS.items())
    return (f"sprx {command}: there is no landing folder at {landing} (is SPRX_HOME right?); feeds arrive in "
            f"{folders}, and `sprx demo` lands the sample there")


def ignored_note(landing: Path) -> str | None:
    """One line naming the files in landing/ that no reader takes, or None."""
    from sprx.status import ignored_in_landing

    ignored = ignored_in_landing(landing)
    if not ignored:
        return None
    listed = ", ".join(ignored[:5]) + (f" and {len(ignored) - 5} more" if len(ignored) > 5 else "")
    return (f"  ignored: {len(ignored)} file(s) in landing/ that no reader takes (not a feed's folder or name): "
            f"{listed}")


def run_ingest(sources: tuple[str, ...], paths: tuple[Path, ...] = (), accept: tuple[str, ...] = ()) -> int:
    """Run the ingest flow and print its summary; 0 when it completed, 1 when a stage failed."""
    from flows.ingest import ingest
    from flows.pseudonymise import MissingKeyError

    from flows.lock import WarehouseBusy
    from flows.warehouse import WarehouseInUse

    try:
        summary = ingest(sources=sources, paths=paths, accept=accept)
    except (MissingKeyError, WarehouseBusy, WarehouseInUse) as error:
        print(f"sprx ingest: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # a failed stage: one line, the stage and the reason
        print(f"sprx ingest: failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(summarise_ingest(summary))
    if note := ignored_note(get_settings().landing_dir):
        print(note)
    return 0


def summarise_ingest(summary) -> str:
    """Per-status delivery counts, row accounting and the top rejection reasons."""
    statuses = ", ".join(f"{count} {status}" for status, count in sorted(summary.by_status().items()))
    lines = [
        f"Ingest: {len(summary.files)} new deliveries (a file, or a SystmOne folder) processed "
        f"({statuses or 'none new'}), {summary.skipped} already recorded",
        f"  rows: {summary.rows_received} received = {summary.rows_loaded} loaded + {summary.rows_rejected} "
        "quarantined (rows that broke their contract, in audit.rejected_rows)",
    ]
    if getattr(summary, "archived", 0):
        lines.append(f"  {summary.archived} file(s) moved to archive/ (kept read-only)")
    if getattr(summary, "arriving", None):
        lines.append(f"  {len(summary.arriving)} file(s) still being written, left in landing/ for the next run: "
                     + ", ".join(summary.arriving[:5]) + (" ..." if len(summary.arriving) > 5 else ""))
    for result in summary.files:
        if result.status in ("held", "rejected"):
            lines.append(f"  {result.status}: {result.relative}: {result.message}")
    reasons = summary.top_reasons(5)
    if reasons:
        lines.append("  top rejection reasons:")
        lines.extend(f"    {count:6d}  {reason}" for reason, count in reasons)
    return "\n".join(lines)


def cmd_ingest(args: argparse.Namespace) -> int:
    """Load new files from landing/ into the warehouse (or, with --reprocess, rebuild it from archive/)."""
    if args.reprocess:
        if args.paths or args.source or args.accept:
            raise UsageError("--reprocess rebuilds every source from archive/; it takes no PATH, --source or --accept")
    problem = _find_key("ingest") or (None if args.reprocess else _check_landing("ingest"))
    if problem:
        print(problem, file=sys.stderr)
        return 1
    if args.reprocess:
        return run_reprocess()
    return run_ingest(_sources(args.source), tuple(args.paths), tuple(args.accept))


def run_reprocess() -> int:
    """Run the reprocess flow and print its summary; 0 when the new raw zone was swapped in, else 1."""
    from flows.ingest import BACKUP_NAME, reprocess
    from flows.pseudonymise import MissingKeyError
    from flows.lock import WarehouseBusy
    from flows.warehouse import WarehouseInUse

    try:
        summary = reprocess()
    except (MissingKeyError, WarehouseBusy, WarehouseInUse) as error:
        print(f"sprx ingest --reprocess: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # nothing was swapped in: the old warehouse stands
        print(f"sprx ingest --reprocess: failed, the warehouse is unchanged: {type(error).__name__}: {error}",
              file=sys.stderr)
        return 1
    print(summarise_ingest(summary))
    print(f"Reprocessed: the raw zone and audit tables were rebuilt from archive/ and landing/ "
          f"(the previous warehouse is kept as {BACKUP_NAME}). The dbt-built schemas are not in the new "
          "warehouse: run sprx build --full-refresh")
    return 0


def _build_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "build",
        help="dbt build: reference seeds, staging, intermediate models and every data and unit test",
        description=(
            "Run the dbt project (dbt_project/) on $SPRX_HOME/warehouse.duckdb: load the reference seeds, "
            "build every model and run every data and unit test. A model that fails to build or a test "
            "that fails exits 1 and is named."
        ),
    )
    parser.add_argument("--full-refresh", action="store_true",
                        help="rebuild incremental models and seeds from scratch (after sprx ingest --reprocess)")
    _flow_options(parser)
    parser.set_defaults(handler=lambda args: run_build(full_refresh=args.full_refresh))


def run_build(full_refresh: bool = False) -> int:
    """Run the build flow and print its summary; 0 when every model built and every test passed."""
    from flows.build import DbtBuildError, build

    try:
        summary = build(full_refresh=full_refresh)
    except DbtBuildError as failed:
        print(f"sprx build: failed: {failed.summary.describe()}", file=sys.stderr)
        return 1
    except Exception as error:  # a failed stage: one line, the stage and the reason
        print(f"sprx build: failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(summary.describe())
    return 0


def _export_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write the raw zone and the audit tables as Parquet (for the dbt project on Spark)",
        description=(
            "Write every raw.* and audit.* table of $SPRX_HOME/warehouse.duckdb as a Parquet dataset, "
            "OUT/<schema>/<table>/, partitioned by practice (GP), trust (ambulance), service (VCSE) or "
            "source (audit.file_loads), times as UTC instants. It is what the dbt project's `spark` target "
            "reads (docs/scale.md). Holds the warehouse lock while it reads; the new export replaces the "
            "previous one whole, by renames."
        ),
    )
    parser.add_argument("--raw", action="store_true", required=True,
                        help="export the raw zone and the audit tables (the only export there is)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="where to write (default $SPRX_HOME/export/raw, where the spark target reads)")
    parser.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    """Export the raw zone and the audit tables as Parquet."""
    from flows.export import ExportError, export_raw
    from flows.lock import WarehouseBusy

    try:
        summary = export_raw(args.out)
    except (ExportError, WarehouseBusy) as error:
        print(f"sprx export: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # one line, never a traceback
        print(f"sprx export: failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(summary.describe())
    return 0


def _run_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="the whole pipeline: ingest what is new, build the warehouse, publish the analysts' copy",
        description=(
            "Ingest every new file in $SPRX_HOME/landing, run `dbt build`, then publish "
            "$SPRX_HOME/published/ (analytics.duckdb, parquet/, csv/), all as one Prefect flow holding "
            "the warehouse lock. Exits 0 when the run completed (quarantined rows and held files are "
            "reported, not failures), 1 when a stage failed: the stage and the reason are printed on one "
            "line, and a failed build never publishes."
        ),
    )
    parser.add_argument("--source", action="append", choices=("gp", "emis", "systmone", "ambulance", "vcse"),
                        help="ingest only these sources (repeatable; gp = emis and systmone)")
    parser.add_argument("--if-loaded", action="store_true",
                        help="build only when something loaded that the last complete build did not see (this run "
                             "or an earlier one), or the last build failed; publish only what is not yet published")
    _flow_options(parser)
    parser.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    """Ingest, build and publish in one flow."""
    return run_pipeline("run", list(_sources(args.source)), "if-loaded" if args.if_loaded else "always")


def run_pipeline(command: str, sources: list[str] | None, build_when: str) -> int:
    """The `run` flow (ingest, build, publish) with its summary; 0 when it completed, 1 with one line if not."""
    problem = _find_key(command) or _check_landing(command)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    from flows.lock import WarehouseBusy
    from flows.run import StageFailed, nothing_to_do, run
    from flows.warehouse import WarehouseInUse

    if build_when == "if-loaded" and nothing_to_do(sources):
        # landing/ is empty and nothing is outstanding: no flow run, no Prefect server to start
        print("Nothing new was loaded: no build, and the published copy stands (landing/ is empty and the last "
              "build is published, so no flow run was started).")
        if note := ignored_note(get_settings().landing_dir):
            print(note)
        return 0
    try:
        summary = run(sources=sources, build_when=build_when)
    except StageFailed as failed:
        print(f"sprx {command}: failed at {failed.stage}: {failed.reason}", file=sys.stderr)
        return 1
    except (WarehouseBusy, WarehouseInUse) as busy:
        print(f"sprx {command}: {busy}", file=sys.stderr)
        return 1
    print(summarise_ingest(summary.ingest))
    if note := ignored_note(get_settings().landing_dir):
        print(note)
    if summary.nothing_to_publish:
        print("Nothing to publish: no file has loaded into this warehouse yet, so nothing was built or published "
              f"(put feeds in {get_settings().landing_dir}, or run `sprx demo`).")
        return 0
    if summary.build is None and summary.publish is None:
        print("Nothing new was loaded: no build, and the published copy stands.")
        return 0
    if summary.build is None:
        print("Nothing new was loaded; the last build had not been published, so it was.")
    else:
        print(f"Build: {summary.build.describe()}")
    if summary.publish is not None:
        print(summary.publish.describe())
    return 0


def _publish_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "publish",
        help="copy the warehouse's published schema to $SPRX_HOME/published/ for analysts",
        description=(
            "Copy the published schema (and nothing else) of the last build into a new release: "
            "analytics.duckdb, Parquet and CSV files, the report (report/index.html, report/report.pdf) "
            "and manifest.json; check it against disclosure control and for anything like an identifier, "
            "then make it current with one rename. `sprx run` does this after every successful build; "
            "run it alone after `sprx build`. Refused (exit 1, the published copy unchanged) when the last "
            "build failed or was killed."
        ),
    )
    _flow_options(parser)
    parser.set_defaults(handler=cmd_publish)


def cmd_publish(args: argparse.Namespace) -> int:
    """Publish the analysts' copy from the last build."""
    from flows.lock import WarehouseBusy
    from flows.publish import PublicationRefused, publish
    from flows.warehouse import WarehouseInUse

    if not get_settings().warehouse_path.exists():
        print(f"sprx publish: nothing to publish: there is no warehouse in {get_settings().home} yet; "
              "run `sprx run` (or `sprx demo`)", file=sys.stderr)
        return 1
    try:
        summary = publish()
    except (PublicationRefused, WarehouseBusy, WarehouseInUse) as error:
        print(f"sprx publish: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # a failed stage: one line, the stage and the reason
        print(f"sprx publish: failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(summary.describe())
    return 0


def _serve_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the scheduled deployments (GP nightly, ambulance weekly, VCSE every 15 minutes) until stopped",
        description=(
            "Register the pipeline's Prefect deployments and run them on their schedules from this "
            "process until Ctrl-C: run/gp-nightly, run/ambulance-weekly, run/vcse-frequent (each ingests "
            "its sources, then builds and publishes if anything loaded) and run/full (on demand). Runs "
            "never overlap. Uses the Prefect server at PREFECT_API_URL; with none set, starts a local Prefect "
            "server (with its scheduler) on a free port of 127.0.0.1 for as long as serve runs, its database "
            "in $SPRX_HOME/prefect/, and prints its URL. Schedules are cron expressions read in the time "
            "zone SPRX_SCHEDULE_TIMEZONE (default Europe/London), from SPRX_SCHEDULE_GP, "
            "SPRX_SCHEDULE_AMBULANCE, SPRX_SCHEDULE_VCSE or these options; serve prints them as it starts."
        ),
    )
    parser.add_argument("--gp-cron", metavar="CRON", help="GP schedule (default SPRX_SCHEDULE_GP or '30 2 * * *')")
    parser.add_argument("--ambulance-cron", metavar="CRON",
                        help="ambulance schedule (default SPRX_SCHEDULE_AMBULANCE or '0 6 * * 1')")
    parser.add_argument("--vcse-cron", metavar="CRON",
                        help="VCSE schedule (default SPRX_SCHEDULE_VCSE or '*/15 * * * *')")
    _flow_options(parser)
    parser.set_defaults(handler=cmd_serve, quiet_prefect=False)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the scheduled deployments until interrupted."""
    import dataclasses

    from flows.serve import ServerStartFailed, check_schedules, serve

    settings = get_settings()
    overrides = {name: value for name, value in (("schedule_gp", args.gp_cron),
                                                 ("schedule_ambulance", args.ambulance_cron),
                                                 ("schedule_vcse", args.vcse_cron)) if value}
    settings = dataclasses.replace(settings, **overrides)
    try:
        check_schedules(settings)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if problem := _find_key("serve"):
        print(problem + " (every scheduled ingest would fail)", file=sys.stderr)
        return 1
    settings = dataclasses.replace(settings, pseudonymisation_key=get_settings().pseudonymisation_key)
    try:
        serve(settings, say=lambda line: print(line, flush=True))
    except ServerStartFailed as error:
        print(f"sprx serve: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _status_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "status",
        help="per source and practice/trust/service: last received and loaded, last run's rows, held, late",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Report, per source and practice, trust or VCSE service: the last file received and loaded, the rows\n"
            "loaded and rejected by the last ingest run, held files awaiting release, and whether the feed is\n"
            "late against its expected cadence (dbt_project/seeds/feed_cadence.csv); the last ingest, build and\n"
            "publish (a stage whose process died shows as abandoned); the stage running now, if any; rejected\n"
            "files still in landing/ and files there that no reader takes (ignored). Reads the warehouse\n"
            "read-only; while a run holds it, shows $SPRX_HOME/status.json and says so. On a home with nothing\n"
            "ingested yet it says so (and --json prints the same document with no feeds).\n\n"
            "Exit code: 0; with --check, 1 when a feed is late, a file is held, a rejected file waits in\n"
            "landing/, or a stage's last run failed or was abandoned.\n\n"
            "JSON keys (--json): status_version, now, origin (warehouse, snapshot or none), taken_at,\n"
            "run_in_progress, running {holder} or null, runs {ingest, build, publish: null or {run_id, status,\n"
            "started_at, finished_at, detail}}, feeds [{source, organisation, last_received_at,\n"
            "last_received_file, last_received_status, last_loaded_at, last_loaded_file, latest_extract_date,\n"
            "data_received_at, last_run {files, rows_loaded, rows_rejected, files_rejected}, held_files,\n"
            "expected_every_days, late_after_days, age_days, late}], rejected_in_landing, ignored_in_landing,\n"
            "summary {feeds, late, held_files, rejected_files, ignored_files, failed_stages}. Times are UTC\n"
            "(ISO 8601 with Z). Full meanings: sprx/status.py."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print the status as JSON (keys above)")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when a feed is late, a file is held, a rejected file waits in landing/ or a "
                             "stage's last run failed or was abandoned (for monitoring)")
    parser.add_argument("--now", type=_moment, metavar="YYYY-MM-DDTHH:MM",
                        help="judge lateness as of this UTC time instead of now")
    parser.set_defaults(handler=cmd_status)


def _moment(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text.removesuffix("Z"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time; use YYYY-MM-DDTHH:MM (UTC)") from None
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


def cmd_status(args: argparse.Namespace) -> int:
    """Print the status of $SPRX_HOME's feeds and runs."""
    from sprx.status import StatusUnavailable, needs_attention, read_status, render

    try:
        status = read_status(get_settings().home, now=args.now)
    except StatusUnavailable as error:
        print(f"sprx status: {error}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=1) if args.json else render(status))
    return 1 if args.check and needs_attention(status) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sprx",
        description=(
            "A warehouse for social prescribing data: GP, ambulance and VCSE feeds in, linked outcomes out. "
            "Settings come from SPRX_* environment variables (SPRX_HOME, default ./data)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"sprx {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    _sample_parser(subparsers)
    _ingest_parser(subparsers)
    _build_parser(subparsers)
    _export_parser(subparsers)
    _status_parser(subparsers)
    _run_parser(subparsers)
    _publish_parser(subparsers)
    _serve_parser(subparsers)
    _demo_parser(subparsers)
    add_portal_parser(subparsers)
    return parser


def _prepare_flows(args: argparse.Namespace) -> Callable[[], None]:
    """Before a command runs flows: Prefect's start-up timeout and colours, its log lines to a file unless
    --verbose, and progress counts on the console. Returns what undoes the last two."""
    from sprx.output import Progress, prepare_prefect, quiet_prefect, show_progress

    if args.verbose:
        os.environ["SPRX_VERBOSE"] = "1"
    settings = get_settings()
    prepare_prefect(settings)
    restore = quiet_prefect(settings.home) if not settings.verbose and getattr(args, "quiet_prefect", True) else None
    show_progress(Progress())

    def undo() -> None:
        show_progress(None)
        if restore is not None:
            restore()

    return undo


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    undo = None
    try:
        if getattr(args, "runs_flows", False):
            undo = _prepare_flows(args)
        return args.handler(args)
    except (UsageError, SettingsError) as error:
        print(f"sprx: {error}", file=sys.stderr)
        return 2
    finally:
        # called as a library (tests pass argv): put Prefect's console logging back. As the `sprx` command,
        # leave it in the log file: Prefect still logs as the process exits (stopping its temporary server).
        if undo is not None and argv is not None:
            undo()


if __name__ == "__main__":
    raise SystemExit(main())
