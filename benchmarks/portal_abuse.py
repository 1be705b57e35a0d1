"""The portal under the red team's probes of issue 13 (findings 6 and 8), on 127.0.0.1 only, bounded.

    .venv/bin/python benchmarks/portal_abuse.py [--parallel 50] [--compare-tree DIR]

Starts `sprx portal` on a free localhost port with a fresh SPRX_HOME and one service, then:
  flood      PARALLEL requests at once from 127.0.0.1 with well-formed wrong keys, while one request with the
             right key from another client (127.0.0.2) is timed; with the default limits, and (with
             --compare-tree, a checkout of an older commit, e.g. `git worktree add /tmp/old baeffa5`) the same
             probes against the portal served from that tree
  distinct   the same with a different wrong key in each request
  malformed  the same with malformed keys (refused before any scrypt)
  workbook   the 103 KB-class workbook whose sheet part is sheet1.bin reaching column XFD, and one with a
             cell at row 1,048,576: time and peak Python memory of the portal's check (it refuses both),
             and, for comparison, peak RSS of reading the XFD workbook with openpyxl as the ingest does
Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPRX = [sys.executable, "-m", "sprx"]


def free_port() -> int:
    """A port nobody is listening on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(base: str, path: str, key: str, source: str = "127.0.0.1") -> tuple[int, float]:
    """GET with a bearer key from a loopback source address: (status, seconds)."""
    began = time.monotonic()
    host, _, port = base.removeprefix("http://").partition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=120, source_address=(source, 0))
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {key}"})
        status = connection.getresponse().status
    finally:
        connection.close()
    return status, time.monotonic() - began


def flood(base: str, good_key: str, bad_key: str | Callable[[int], str], parallel: int) -> dict:
    """PARALLEL bad-key requests at once (one key, or a key per request) and one good one timed among them."""
    results: list[tuple[int, float]] = []
    barrier = threading.Barrier(parallel + 1)

    def bad(number: int) -> None:
        barrier.wait()
        results.append(get(base, "/api/uploads", bad_key(number) if callable(bad_key) else bad_key))

    threads = [threading.Thread(target=bad, args=(number,)) for number in range(parallel)]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    barrier.wait()
    time.sleep(0.05)  # the flood is in flight
    good_status, good_seconds = get(base, "/api/uploads", good_key, source="127.0.0.2")  # another client
    for thread in threads:
        thread.join()
    statuses: dict[int, int] = {}
    for status, _ in results:
        statuses[status] = statuses.get(status, 0) + 1
    return {"flood_seconds": round(time.monotonic() - began, 2), "statuses": statuses,
            "good_request_status": good_status, "good_request_seconds": round(good_seconds, 3)}


def serve(home: Path, tree: Path | None = None) -> tuple[subprocess.Popen, str, str]:
    """`sprx portal` (from `tree` when given) on a free port with one service; the process, its address and key."""
    env = dict(os.environ, SPRX_HOME=str(home))
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    cwd = tree or ROOT  # `python -m` puts the working folder first on the path
    added = subprocess.run([*SPRX, "portal", "add-service", "bench", "Bench"], env=env, cwd=cwd,
                           capture_output=True, text=True, check=True)
    key = added.stdout.strip().splitlines()[-1]
    port = free_port()
    process = subprocess.Popen([*SPRX, "portal", "--port", str(port)], env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{base}/help", timeout=2)
            return process, base, key
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the portal did not start")


def workbooks() -> dict[str, bytes]:
    """The two hostile workbooks: sheet part renamed sheet1.bin, reaching column XFD / row 1,048,576."""
    import openpyxl

    def build(extra_rows: bytes) -> bytes:
        book = openpyxl.Workbook()
        book.active.append(["Date", "Group", "Attended", "Surname", "DOB"])
        book.active.append(["03/06/2026", "Walk", "Y", "Hughes", "17/08/1972"])
        buffer = io.BytesIO()
        book.save(buffer)
        source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
            for info in source.infolist():
                data = source.read(info.filename).replace(b"/xl/worksheets/sheet1.xml", b"/xl/worksheets/sheet1.bin")
                if info.filename == "xl/worksheets/sheet1.xml":
                    target.writestr("xl/worksheets/sheet1.bin", data.replace(b"</sheetData>", extra_rows + b"</sheetData>"))
                else:
                    target.writestr(info.filename, data)
        return out.getvalue()

    wide_rows = b"".join(f'<row r="{n}"><c r="XFD{n}" t="inlineStr"><is><t>x</t></is></c></row>'.encode()
                         for n in range(3, 2003))
    tall = b'<row r="1048576"><c r="A1048576" t="inlineStr"><is><t>x</t></is></c></row>'
    return {"xfd_2000_rows": build(wide_rows), "row_1048576": build(tall)}


def check_workbooks(folder: Path) -> list[dict]:
    """The portal's check on each hostile workbook: verdict, seconds, peak Python memory."""
    from sprx.portal.checks import SheetRefused, check_workbook

    results = []
    for name, content in workbooks().items():
        path = folder / f"{name}.xlsx"
        path.write_bytes(content)
        tracemalloc.start()
        began = time.monotonic()
        try:
            check_workbook(path)
            verdict = "accepted"
        except SheetRefused as refusal:
            verdict = f"refused: {refusal.message[:60]}"
        seconds = time.monotonic() - began
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        results.append({"workbook": name, "packed_kib": round(len(content) / 1024), "check": verdict,
                        "check_seconds": round(seconds, 3), "check_peak_mib": round(peak / 1024 / 1024, 1)})
    reader = ("import sys, resource; from sprx.readers.vcse import read_vcse\n"
              "rows = sum(chunk.height for chunk in read_vcse(sys.argv[1]))\n"
              "print(rows, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)")
    service = folder / "vcse" / "bench"
    service.mkdir(parents=True, exist_ok=True)
    wide = service / "xfd_2000_rows.xlsx"
    wide.write_bytes(workbooks()["xfd_2000_rows"])
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-c", reader, str(wide)], capture_output=True, text=True, check=False)
    out = done.stdout.split()
    results.append({"workbook": "xfd_2000_rows", "unchecked_openpyxl_read_seconds": round(time.monotonic() - began, 1),
                    "unchecked_openpyxl_peak_rss_mib": int(out[1]) if len(out) == 2 else None,
                    "rows_read": int(out[0]) if len(out) == 2 else done.stderr.strip().splitlines()[-1:]})
    return results


def main() -> None:
    """Run every probe and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parallel", type=int, default=50)
    parser.add_argument("--compare-tree", type=Path, help="a checkout of an older commit to probe the same way")
    args = parser.parse_args()
    trees = [("this tree", None)] + ([(f"tree {args.compare_tree}", args.compare_tree)] if args.compare_tree else [])
    with tempfile.TemporaryDirectory() as folder:
        for label, tree in trees:
            process, base, key = serve(Path(folder) / str(len(label)) / "home", tree)
            try:
                service = key.partition(".")[0]
                wrong = f"{service}.{'A' * 43}"
                print(json.dumps({"probe": "flood", "portal": label, "parallel": args.parallel,
                                  **flood(base, key, wrong, args.parallel)}), flush=True)
                print(json.dumps({"probe": "distinct wrong keys", "portal": label, "parallel": args.parallel,
                                  **flood(base, key, lambda n: f"{service}.{n:043d}", args.parallel)}), flush=True)
                print(json.dumps({"probe": "malformed", "portal": label, "parallel": args.parallel,
                                  **flood(base, key, f"{service}.short", args.parallel)}), flush=True)
            finally:
                process.terminate()
                process.wait(10)
        for result in check_workbooks(Path(folder)):
            print(json.dumps({"probe": "workbook", **result}), flush=True)


if __name__ == "__main__":
    main()
