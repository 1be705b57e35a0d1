"""ONS4 wellbeing change per VCSE service (mart_vcse_wellbeing_by_service and its published copy), on the sample.

The expected figures are recomputed here from the staged attendances, person by person, in Python: the
services that record wellbeing, who answered twice, their first and latest answers and the change."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import duckdb
import pytest

from tests.dbt.conftest import SampleBuild

pytestmark = pytest.mark.usefixtures("prefect_harness")

MEASURES = {"life_satisfaction": "wellbeing_score", "worthwhile": "wellbeing_worthwhile",
            "happiness": "wellbeing_happiness", "anxiety": "wellbeing_anxiety"}


def query(warehouse: Path, sql: str) -> list[tuple]:
    """Rows of a query on the built warehouse, read-only."""
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def expected_change(warehouse: Path) -> dict[tuple[str, str], dict]:
    """Per service and measure: people answering, answering twice, mean first/latest, improved; from staging."""
    columns = ", ".join(MEASURES.values())
    rows = query(warehouse, f"""
        select a.service_id, coalesce(f.person_key, 'attendee:' || a.service_id || ':' || a.attendee_key),
               a.session_date, {columns}
        from staging.stg_vcse__attendances as a
        left join intermediate.int_feed_records_linked as f on f.feed = 'vcse' and f.record_key = a.attendance_key
        where a.is_attended""")
    answers: dict[tuple[str, str, str], list[tuple]] = defaultdict(list)
    for service, person, day, *scores in rows:
        for measure, score in zip(MEASURES, scores, strict=True):
            if score is not None:
                answers[(service, measure, person)].append((day, score))
    summary: dict[tuple[str, str], dict] = defaultdict(lambda: {"people": 0, "twice": 0, "first": [], "latest": [],
                                                                "improved": 0})
    for (service, measure, _), given in answers.items():
        given.sort()
        entry = summary[(service, measure)]
        entry["people"] += 1
        if len({day for day, _ in given}) >= 2:
            first, latest = given[0][1], max(score for day, score in given if day == given[-1][0])
            entry["twice"] += 1
            entry["first"].append(first)
            entry["latest"].append(latest)
            entry["improved"] += (latest < first) if measure == "anxiety" else (latest > first)
    return summary


def test_wellbeing_change_per_service_is_recomputed_person_by_person(sample_build: SampleBuild) -> None:
    expected = expected_change(sample_build.warehouse)
    assert expected, "the sample records wellbeing for at least one service"
    rows = query(sample_build.warehouse, """
        select service_id, measure, people_answering, people_answering_twice, mean_first_score, mean_latest_score,
               mean_change, people_improved, is_lower_better
        from marts.mart_vcse_wellbeing_by_service""")
    assert {(service, measure) for service, measure, *_ in rows} == set(expected)
    for service, measure, people, twice, first, latest, change, improved, lower_better in rows:
        want = expected[(service, measure)]
        assert (people, twice, improved) == (want["people"], want["twice"], want["improved"]), (service, measure)
        assert lower_better == (measure == "anxiety")
        if twice:
            assert first == pytest.approx(sum(want["first"]) / twice)
            assert latest == pytest.approx(sum(want["latest"]) / twice)
            assert change == pytest.approx(latest - first)


def test_the_published_wellbeing_table_is_the_mart_under_disclosure_control(sample_build: SampleBuild) -> None:
    rows = query(sample_build.warehouse, """
        select m.people_answering_twice, m.mean_change, p.mean_change, m.people_answering, p.people_answering
        from marts.mart_vcse_wellbeing_by_service as m
        join published.pub_vcse_wellbeing_by_service as p using (service_measure_key)""")
    assert rows
    for twice, mart_change, published_change, people, published_people in rows:
        assert published_change == (None if twice <= 7 else round(mart_change, 1))
        assert published_people is None if 1 <= people <= 7 else published_people % 5 == 0
