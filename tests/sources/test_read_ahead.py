"""Reading ahead (sprx.readers.read_ahead): the loader sees the same chunks, in order, with the same errors at
the same chunk; the next chunks are made in another thread meanwhile; and a load that stops early, however it
stops, leaves no thread reading its file."""

from __future__ import annotations

import threading
import time

import pytest

from sprx.readers.read_ahead import map_ahead, read_ahead

THREAD = "sprx-read-ahead"


def _ours() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == THREAD]


def _wait_for(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_items_arrive_in_order_and_all_of_them() -> None:
    assert list(read_ahead(iter(range(1000)), depth=2)) == list(range(1000))
    assert list(read_ahead([], depth=1)) == []
    assert not _ours()


def test_the_next_items_are_made_in_another_thread_while_the_caller_holds_one() -> None:
    made_in = []

    def chunks():
        for number in range(10):
            made_in.append(threading.current_thread().name)
            yield number

    reader = read_ahead(chunks(), depth=2)
    assert next(reader) == 0
    # while the caller works on chunk 0, the producer runs ahead: 1 and 2 queued, 3 made and waiting for room
    assert _wait_for(lambda: len(made_in) >= 4)
    time.sleep(0.3)
    assert len(made_in) == 4  # bounded: never the whole file
    assert list(reader) == list(range(1, 10))
    assert set(made_in) == {THREAD}


def test_an_error_while_producing_is_raised_at_the_item_it_stopped() -> None:
    def chunks():
        yield "chunk 1"
        yield "chunk 2"
        raise ValueError("row 200001 is ragged")

    seen = []
    with pytest.raises(ValueError, match="row 200001 is ragged"):
        for chunk in read_ahead(chunks(), depth=2):
            seen.append(chunk)
    assert seen == ["chunk 1", "chunk 2"]
    assert not _ours()


def test_an_iterable_that_cannot_start_fails_in_the_callers_thread() -> None:
    class Unreadable:
        def __iter__(self):
            raise OSError("permission denied")

    with pytest.raises(OSError, match="permission denied"):
        next(read_ahead(Unreadable()))
    assert not _ours()


def _file_like(closed_in: list[str], produced: list[int]):
    try:
        for number in range(1_000_000):
            produced.append(number)
            yield number
    finally:
        closed_in.append(threading.current_thread().name)


def test_a_consumer_that_fails_stops_the_producer_and_the_file_is_closed_in_its_thread() -> None:
    closed_in: list[str] = []
    produced: list[int] = []
    with pytest.raises(RuntimeError, match="the warehouse said no"):
        for chunk in read_ahead(_file_like(closed_in, produced), depth=1):
            if chunk == 3:
                raise RuntimeError("the warehouse said no")
    assert closed_in == [THREAD]  # closed once, by the thread that iterated it
    assert len(produced) < 10
    assert not _ours()


def test_closing_the_reader_stops_the_producer() -> None:
    closed_in: list[str] = []
    produced: list[int] = []
    reader = read_ahead(_file_like(closed_in, produced), depth=1)
    assert [next(reader) for _ in range(3)] == [0, 1, 2]
    reader.close()
    assert closed_in == [THREAD]
    count = len(produced)
    time.sleep(0.2)
    assert len(produced) == count < 10
    assert not _ours()


def test_closing_an_outer_reader_closes_the_inner_one() -> None:
    """As the EMIS loader nests them: parsing in one thread, validation over it in another."""
    closed_in: list[str] = []
    produced: list[int] = []

    def prepared():
        inner = read_ahead(_file_like(closed_in, produced), depth=1)
        try:
            for number in inner:
                yield number * 10
        finally:
            inner.close()

    outer = read_ahead(prepared(), depth=1)
    assert [next(outer) for _ in range(3)] == [0, 10, 20]
    outer.close()
    assert closed_in == [THREAD]
    assert len(produced) < 10
    assert not _ours()


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        list(read_ahead([1], depth=0))


# --- map_ahead: small files read two at a time ----------------------------------------------------------------


def test_map_ahead_gives_each_result_in_order_made_two_at_a_time() -> None:
    both_running = threading.Barrier(2, timeout=5)  # broken (an error) unless two items are made at once

    def read(number: int) -> int:
        if number < 2:
            both_running.wait()
        return number * 10

    assert list(map_ahead(read, range(50), workers=2)) == [number * 10 for number in range(50)]
    assert list(map_ahead(read, [], workers=2)) == []


def test_map_ahead_runs_at_most_one_item_beyond_the_one_the_caller_holds() -> None:
    started: list[int] = []

    def read(number: int) -> int:
        started.append(number)
        return number

    reader = map_ahead(read, range(100), workers=2)
    assert next(reader) == 0
    time.sleep(0.2)
    assert sorted(started) == [0, 1]  # bounded: never the whole list
    assert next(reader) == 1
    time.sleep(0.2)
    assert sorted(started) == [0, 1, 2]
    reader.close()


def test_map_ahead_raises_an_items_error_where_its_result_would_come() -> None:
    def read(number: int) -> int:
        if number == 3:
            raise ValueError("sheet 3 has no header row")
        return number

    seen = []
    with pytest.raises(ValueError, match="sheet 3 has no header row"):
        for result in map_ahead(read, range(10), workers=2):
            seen.append(result)
    assert seen == [0, 1, 2]


def test_a_caller_that_stops_early_leaves_nothing_reading_after_it() -> None:
    started: list[int] = []
    finished: list[int] = []

    def read(number: int) -> int:
        started.append(number)
        time.sleep(0.2)
        finished.append(number)
        return number

    reader = map_ahead(read, range(100), workers=2)
    assert next(reader) == 0
    reader.close()  # item 1 is being read: close waits for it, and starts nothing more
    assert sorted(finished) == sorted(started) == [0, 1]
    time.sleep(0.3)
    assert sorted(started) == [0, 1]
