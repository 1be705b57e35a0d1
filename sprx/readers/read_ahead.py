"""Read ahead: prepare a file's next chunks in a second thread while the loader writes the current one.

A large file's chunks are read, validated and pseudonymised in Python and polars, and written into DuckDB,
which releases the GIL while it works: doing both at once uses the machine's second core. At most
`depth` prepared chunks wait, so memory stays bounded by a few chunks whatever the file's size.
`map_ahead` prepares small files two at a time, for a reader that falls behind its loader.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_ITEM, _DONE, _ERROR = "item", "done", "error"
# How often a producer waiting on a full queue looks whether its consumer has gone, seconds.
_POLL_SECONDS = 0.1


def read_ahead(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """Yield `items` in order while the next ones are computed in a background thread.

    An exception raised while producing an item is raised here, in the caller's thread, where that item
    would have been yielded (a file-level error in chunk 7 stops the load at chunk 7, as without reading
    ahead). When the caller stops early (an error of its own, or it closes the generator), the producer
    stops before its next item and `items` is closed in the thread that iterated it; this generator
    returns once that thread has finished the item in hand, so nothing reads the file after its load has
    ended (an interrupt during that wait leaves the thread, a daemon, to finish on its own)."""
    if depth < 1:
        raise ValueError(f"depth must be at least 1, not {depth}")
    ready: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[str, object]) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    # at the first next(), in the caller's thread (this is a generator): an iterable that cannot be iterated fails
    # here; a generator's own first steps (opening a file, reading its header) run in the producer's thread
    iterator = iter(items)

    def produce() -> None:
        try:
            for item in iterator:
                if not put((_ITEM, item)):
                    return
            put((_DONE, None))
        except BaseException as error:  # handed to the caller, raised there
            put((_ERROR, error))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    producer = threading.Thread(target=produce, name="sprx-read-ahead", daemon=True)
    producer.start()
    try:
        while True:
            try:
                kind, value = ready.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if not producer.is_alive() and ready.empty():  # died without a word: never wait forever
                    raise RuntimeError("the read-ahead thread stopped without finishing or reporting an error")
                continue
            if kind == _DONE:
                return
            if kind == _ERROR:
                raise value  # type: ignore[misc]
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        producer.join()


def map_ahead(function: Callable[[T], R], items: Iterable[T], workers: int = 2) -> Iterator[R]:
    """Yield `function(item)` for each of `items`, in order, computed by `workers` threads at once: while the caller
    holds one result, the next `workers - 1` are computed, and once it asks for the next, one more starts.

    An exception raised by `function` is raised here, where its result would have been yielded. When the caller
    stops early, no more items start and this generator returns once the ones running have finished (the pool
    waits for them), so nothing reads a file after its caller has moved on."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    iterator = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sprx-read-ahead") as pool:
        running = deque(pool.submit(function, item) for item in itertools.islice(iterator, workers))
        while running:  # never more items submitted than threads: each one submitted has started
            result = running.popleft().result()
            yield result
            running.extend(pool.submit(function, item) for item in itertools.islice(iterator, 1))
