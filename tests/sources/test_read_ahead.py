"""Reading ahead (sprx.readers.read_ahead): the loader sees the same chunks, in order, with the same errors at
the same chunk, and a load that stops early leaves no thread reading its file."""

from __future__ import annotations

import threading
import time

import pytest

from sprx.readers.read_ahead import read_ahead


def test_items_arrive_in_order_and_all_of_them() -> None:
    assert list(read_ahead(iter(range(1000)), depth=2)) == list(range(1000))
    assert list(read_ahead([], depth=1)) == []


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


def test_no_more_than_depth_items_wait_beyond_the_one_in_hand() -> None:
    produced = []

    def chunks():
        for number in range(10):
            produced.append(number)
            yield number

    reader = read_ahead(chunks(), depth=2)
    assert next(reader) == 0
    time.sleep(0.5)  # let the producer run as far as it can
    # 0 in hand, 1 and 2 queued, 3 made and waiting for room: never the whole file
    assert len(produced) <= 4
    assert list(reader) == list(range(1, 10))


def test_a_consumer_that_stops_early_stops_the_producer_and_closes_the_file() -> None:
    closed = threading.Event()
    produced = []

    def chunks():
        try:
            for number in range(1_000_000):
                produced.append(number)
                yield number
        finally:
            closed.set()

    before = {thread.ident for thread in threading.enumerate()}
    with pytest.raises(RuntimeError, match="the warehouse said no"):
        for chunk in read_ahead(chunks(), depth=1):
            if chunk == 3:
                raise RuntimeError("the warehouse said no")
    assert closed.is_set()  # the generator was closed, so its file is
    assert len(produced) < 10
    # the producer has finished: no thread of ours is left reading
    assert not [thread for thread in threading.enumerate()
                if thread.ident not in before and thread.name == "sprx-read-ahead"]


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        list(read_ahead([1], depth=0))
