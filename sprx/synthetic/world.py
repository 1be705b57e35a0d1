"""Simulate one block of people day by day: need, GP use, referral, engagement, 999 calls, VCSE.

Arrays are person x day, so a block's memory is bounded by its size, never by the population.
Day 0 is one year before the feed period starts (the GP history every export carries).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from sprx.synthetic.identity import NhsNumbers, pick_names
from sprx.synthetic.params import (
    LOOKBACK_QUARTERS,
    OUTCOME_WINDOWS,
    QUARTER_DAYS,
    SEE_AND_CONVEY_SHARE,
    Parameters,
)
from sprx.synthetic.vcse_services import SERVICES

# Five-year age bands 0-4 ... 95-99 and their population weights (an English-town pyramid).
_AGE_WEIGHTS = np.array(
    [6.0, 6.5, 6.5, 5.8, 5.0, 5.5, 6.3, 7.0, 7.0, 7.0, 7.0, 6.8, 5.8, 5.0, 4.8, 3.8, 2.5, 1.5, 0.7, 0.2]
)
SEXES = np.array(["F", "M", "I", "U"])
_SEX_WEIGHTS = np.array([0.505, 0.493, 0.001, 0.001])
# Appointment statuses, in the order their codes are used below.
STATUS_FINISHED, STATUS_DNA, STATUS_CANCELLED_PATIENT, STATUS_CANCELLED_UNIT = 0, 1, 2, 3
# Types of consultation and their shares (home visits more likely at 80+, see below).
CONSULTATION_TYPES = (
    "GP Surgery", "Telephone consultation", "Video consultation", "Home visit", "Online consultation",
)
_TYPE_WEIGHTS = np.array([0.60, 0.25, 0.03, 0.04, 0.08])
_TYPE_WEIGHTS_80 = np.array([0.45, 0.25, 0.01, 0.25, 0.04])
# Event fault kinds (0 = none); writers render each as the feed would show it.
FAULT_NONE, FAULT_DATE, FAULT_CATEGORY, FAULT_CATEGORY_2, FAULT_NHS, FAULT_DOB, FAULT_RANGE = range(7)


def _ages_gp_multiplier(age: np.ndarray, sex: np.ndarray) -> np.ndarray:
    """GP appointment rate by age and sex, relative to a 35-49 year old man."""
    mult = np.select(
        [age < 5, age < 18, age < 35, age < 50, age < 65, age < 80],
        [1.3, 0.5, 0.8, 1.0, 1.3, 1.9],
        2.6,
    )
    return mult * np.where((sex == "F") & (age >= 16), 1.3, 1.0)


def _calls_multiplier(age: np.ndarray) -> np.ndarray:
    """999 call rate by age, relative to an adult under 65."""
    return np.select([age < 18, age < 65, age < 80], [0.5, 1.0, 1.8], 4.0)


@dataclass
class Block:
    """Everything that happened to one block of people at one practice."""

    practice_index: int
    # --- people (length n) ---
    person_key: np.ndarray
    local_id: np.ndarray
    sex: np.ndarray
    dob: np.ndarray  # datetime64[D]
    postcode: list[str]
    nhs_number: list[str | None]
    first_name: list[str]
    surname: list[str]
    join_day: np.ndarray
    leave_day: np.ndarray  # T when still registered at the end
    died: np.ndarray  # True when the person left the list by dying
    care_home: np.ndarray  # -1, or the index of the care home the person lives in
    imd_decile: np.ndarray
    patient_fault: np.ndarray  # FAULT_NHS when the GP record's NHS number is mistyped
    # --- referral and engagement (length n, -1 = none) ---
    referral_day: np.ndarray
    recode_day: np.ndarray
    declined_day: np.ndarray
    first_attendance_day: np.ndarray
    service: np.ndarray
    self_referred: np.ndarray
    # --- events ---
    appointments: dict[str, np.ndarray] = field(default_factory=dict)
    codes: dict[str, np.ndarray] = field(default_factory=dict)
    calls: dict[str, np.ndarray] = field(default_factory=dict)
    sessions: dict[str, np.ndarray] = field(default_factory=dict)
    # --- truth: per referred person, the expected fall caused by engagement in each outcome and
    # window (NaN for people not referred), and the naive after - before GP change ---
    expected_fall: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)
    gp_before_after: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


@dataclass(frozen=True)
class Grid:
    """The simulated days."""

    day0: dt.date
    days: int
    start_day: int

    @classmethod
    def for_params(cls, params: Parameters) -> "Grid":
        day0 = params.start - dt.timedelta(days=365)
        return cls(day0=day0, days=(params.end - day0).days + 1, start_day=365)

    def date(self, day: int) -> dt.date:
        return self.day0 + dt.timedelta(days=int(day))

    @property
    def day0_np(self) -> np.datetime64:
        return np.datetime64(self.day0.isoformat(), "D")


def _need(rng: np.random.Generator, n: int, grid: Grid, params: Parameters) -> np.ndarray:
    """Need multiplier (>= 1) per person and day: episodes that peak and fade."""
    lead = 200  # episodes may start before day 0 and still be fading
    span = grid.days + lead
    counts = rng.poisson(params.need_episodes_per_year * span / 365.0, n)
    owners = np.repeat(np.arange(n), counts)
    starts = rng.integers(-lead, grid.days, owners.size)
    decay = np.float32(np.exp(-1.0 / params.need_fade_days))
    impulse = np.zeros((n, grid.days), dtype=np.float32)
    early = starts < 0
    level = np.zeros(n, dtype=np.float32)
    np.add.at(level, owners[early], (params.need_peak_multiplier - 1) * np.exp(starts[early] / params.need_fade_days))
    np.add.at(impulse, (owners[~early], starts[~early]), params.need_peak_multiplier - 1)
    need = np.empty((n, grid.days), dtype=np.float32)
    for day in range(grid.days):
        level = level * decay + impulse[:, day]
        need[:, day] = level
    need += 1.0
    return need


def _thin(rng: np.random.Generator, counts: np.ndarray, keep: float, rows: np.ndarray, from_day: np.ndarray) -> None:
    """Keep each event with probability `keep` on and after each row's `from_day` (in place)."""
    for row, first in zip(rows, from_day):
        tail = counts[row, first:]
        counts[row, first:] = rng.binomial(tail, keep)


def simulate_block(
    *,
    rng: np.random.Generator,
    params: Parameters,
    grid: Grid,
    practice_index: int,
    n_people: int,
    n_joiners: int,
    person_key_start: int,
    local_id_start: int,
    postcodes: list[str],
    postcode_imd: dict[str, int],
    care_home_postcodes: list[str],
    care_home_residents: list[int],
    nhs_numbers: NhsNumbers,
) -> Block:
    """Simulate `n_people` registered at the start plus `n_joiners`, and any care-home residents."""
    residents = sum(care_home_residents)
    n = n_people + n_joiners + residents
    T = grid.days
    key = np.arange(person_key_start, person_key_start + n)

    # --- who they are ---------------------------------------------------------------------
    age_band = rng.choice(len(_AGE_WEIGHTS), n, p=_AGE_WEIGHTS / _AGE_WEIGHTS.sum())
    age_years = age_band * 5 + rng.random(n) * 5
    care_home = np.full(n, -1)
    position = n_people + n_joiners
    for home, count in enumerate(care_home_residents):
        care_home[position:position + count] = home
        age_years[position:position + count] = 80 + rng.random(count) * 19
        position += count
    sex = rng.choice(SEXES, n, p=_SEX_WEIGHTS)
    # age is measured at the start of the feed period; date of birth follows from it
    reference = np.datetime64(grid.date(grid.start_day).isoformat(), "D")
    dob = reference - np.round(age_years * 365.25).astype("timedelta64[D]")
    joiners = slice(n_people, n_people + n_joiners)
    join_day = np.zeros(n, dtype=np.int64)
    join_day[joiners] = rng.integers(1, T, n_joiners)
    # babies join at birth: keep a joiner's date of birth on or before the day they join
    dob = np.minimum(dob, grid.day0_np + join_day.astype("timedelta64[D]"))
    leave_after = rng.exponential(365.0 / params.leave_rate_per_year, n).astype(np.int64) + 1
    # deaths: a Gompertz rate by age at joining (doubling every death_doubling_years)
    age_at_join = age_years + join_day / 365.25 - grid.start_day / 365.25
    death_rate = params.death_rate_per_year_at_65 * 2.0 ** ((age_at_join - 65.0) / params.death_doubling_years)
    die_after = rng.exponential(365.0 / np.maximum(death_rate, 1e-9), n).astype(np.int64) + 1
    died = (die_after < leave_after) & (join_day + die_after < T)
    leave_day = np.minimum(join_day + np.minimum(leave_after, die_after), T)
    picked = rng.integers(0, len(postcodes), n)
    postcode = [postcodes[i] for i in picked]
    for person in np.nonzero(care_home >= 0)[0]:
        postcode[person] = care_home_postcodes[care_home[person]]
    imd = np.array([postcode_imd[p] for p in postcode])
    quintile = (imd + 1) // 2  # 1 (most deprived) .. 5
    first_name, surname = pick_names(rng, sex)
    has_nhs = rng.random(n) >= params.missing_nhs_number_share
    nhs: list[str | None] = [nhs_numbers.take() if has else None for has in has_nhs]
    age_now = age_years  # close enough over a few years for rates

    # --- need and GP use --------------------------------------------------------------------
    day_index = np.arange(T)
    registered = (day_index[None, :] >= join_day[:, None]) & (day_index[None, :] < leave_day[:, None])
    frailty = rng.gamma(params.frailty_shape, 1.0 / params.frailty_shape, n)
    frequent = (age_now >= 18) & (rng.random(n) < params.frequent_caller_share)
    young_frequent = (age_now < 18) & (rng.random(n) < params.frequent_caller_share / 3)
    gp_rate = (
        params.gp_appointments_per_year / 365.0
        * _ages_gp_multiplier(age_now, sex)
        * (1 + 0.05 * (10 - imd))
        * frailty
        * np.where(frequent | (care_home >= 0), 2.0, 1.0)
    )
    need = _need(rng, n, grid, params)
    gp_lambda = (gp_rate[:, None] * need * registered).astype(np.float32)
    appointments = rng.poisson(gp_lambda).astype(np.int32)
    finished_share = 1 - params.did_not_attend_share - params.cancelled_by_patient_share - params.cancelled_by_unit_share
    finished = rng.binomial(appointments, finished_share).astype(np.int32)
    not_finished = appointments - finished
    del appointments

    # --- 999 calls (before the effect, which thins them below) ---------------------------------
    calls_rate = np.where(
        care_home >= 0,
        params.care_home_calls_per_year,
        np.where(frequent, params.frequent_caller_calls_per_year,
                 np.where(young_frequent, 8.0, params.calls_per_year * _calls_multiplier(age_now)
                          * (1 + 0.08 * (10 - imd)))),
    ) / 365.0
    call_lambda = (calls_rate[:, None] * np.where(care_home[:, None] >= 0, 1.0, need) * registered).astype(np.float32)
    calls = rng.poisson(call_lambda).astype(np.int32)

    # --- referral: the model in params.py, on the history the warehouse can read -----------------
    referral_day = _referral_days(rng, params, grid, practice_index, finished, calls, need, registered,
                                  age_now, sex, quintile, care_home)
    referred = referral_day >= 0

    declined = referred & (rng.random(n) < params.declined_share)
    engages = referred & ~declined & (rng.random(n) < params.engaged_share)
    declined_day = np.where(declined, referral_day + rng.integers(1, 22, n), -1)
    declined_day = np.where(declined_day >= T, -1, declined_day)
    recoded = referred & (rng.random(n) < params.recoded_share)
    recode_day = np.where(recoded, referral_day + rng.integers(7, 61, n), -1)
    recode_day = np.where(recode_day >= T, -1, recode_day)

    # --- VCSE: who goes where, and when the first session is ---------------------------------
    weights = np.array([s.share for s in SERVICES])
    service = rng.choice(len(SERVICES), n, p=weights / weights.sum())
    weekday0 = grid.day0.weekday()
    delay = 7 + rng.exponential(params.days_to_first_attendance, n).astype(np.int64)

    def next_session(day: np.ndarray) -> np.ndarray:
        """First session day of each person's service on or after `day`."""
        session_weekday = np.array([SERVICES[s].weekday for s in service])
        return day + (session_weekday - (weekday0 + day)) % 7

    first_attendance_day = np.where(engages, next_session(referral_day + delay), -1)
    first_attendance_day = np.where(first_attendance_day >= T, -1, first_attendance_day)
    adult_unreferred = ~referred & (age_now >= 18) & (care_home < 0)
    start = grid.start_day
    years = (T - start) / 365.0
    self_referred = adult_unreferred & (rng.random(n) < params.self_referral_share_per_year * years)
    self_start = np.where(self_referred, next_session(rng.integers(start, T, n)), -1)
    self_start = np.where(self_start >= T, -1, self_start)
    self_referred &= self_start >= 0

    # --- the true effect, from first attendance ----------------------------------------------
    engaged_rows = np.nonzero(first_attendance_day >= 0)[0]
    expected_fall = _expected_falls(
        params, referral_day, first_attendance_day, gp_lambda * finished_share, call_lambda, T)
    del call_lambda, gp_lambda, need
    _thin(rng, finished, 1 - params.effect_gp, engaged_rows, first_attendance_day[engaged_rows])
    _thin(rng, not_finished, 1 - params.effect_gp, engaged_rows, first_attendance_day[engaged_rows])
    _thin(rng, calls, 1 - params.effect_999, engaged_rows, first_attendance_day[engaged_rows])
    gp_before_after = _before_after(referral_day, finished, T)
    del registered

    block = Block(
        practice_index=practice_index,
        person_key=key,
        local_id=np.arange(local_id_start, local_id_start + n),
        sex=sex,
        dob=dob,
        postcode=postcode,
        nhs_number=nhs,
        first_name=first_name,
        surname=surname,
        join_day=join_day,
        leave_day=leave_day,
        died=died,
        care_home=care_home,
        imd_decile=imd,
        patient_fault=np.zeros(n, dtype=np.int8),
        referral_day=referral_day,
        recode_day=recode_day,
        declined_day=declined_day,
        first_attendance_day=first_attendance_day,
        service=service,
        self_referred=self_referred,
        expected_fall=expected_fall,
        gp_before_after=gp_before_after,
    )
    block.appointments = _appointment_events(rng, params, finished, not_finished, age_now)
    block.codes = _code_events(rng, block, T)
    block.calls = _call_events(rng, calls, care_home)
    block.sessions = _session_events(rng, params, grid, block, self_start, delay, next_session)
    _mark_faults(rng, params, block, T)
    return block


def _quarter_counts(cumulative: np.ndarray, days: np.ndarray, quarter: int) -> np.ndarray:
    """Events in [d - 91k, d - 91(k-1)) for each day d (columns), from a person x (T + 1) cumulative sum."""
    upper = np.clip(days - QUARTER_DAYS * (quarter - 1), 0, None)
    lower = np.clip(days - QUARTER_DAYS * quarter, 0, None)
    return cumulative[:, upper] - cumulative[:, lower]


def _referral_days(
    rng: np.random.Generator,
    params: Parameters,
    grid: Grid,
    practice_index: int,
    finished: np.ndarray,
    calls: np.ndarray,
    need: np.ndarray,
    registered: np.ndarray,
    age: np.ndarray,
    sex: np.ndarray,
    quintile: np.ndarray,
    care_home: np.ndarray,
) -> np.ndarray:
    """Day of each person's (only) referral, or -1: the daily hazard of the model in params.py."""
    n, T = finished.shape
    start = grid.start_day
    days = np.arange(start, T)
    zeros = np.zeros((n, 1), dtype=np.int32)
    gp_cumulative = np.concatenate([zeros, np.cumsum(finished, axis=1, dtype=np.int32)], axis=1)
    calls_cumulative = np.concatenate([zeros, np.cumsum(calls, axis=1, dtype=np.int32)], axis=1)
    log_hazard = np.zeros((n, days.size), dtype=np.float32)
    for quarter in range(1, LOOKBACK_QUARTERS + 1):
        weight = params.referral_gp_quarter_weights[quarter - 1]
        log_hazard += weight * np.log1p(_quarter_counts(gp_cumulative, days, quarter).astype(np.float32))
    year_calls = sum(_quarter_counts(calls_cumulative, days, quarter) for quarter in range(1, 5))
    log_hazard += params.referral_999_weight * np.log1p(year_calls.astype(np.float32))
    del gp_cumulative, calls_cumulative, year_calls
    practice_effect = np.random.default_rng([params.seed, 99, practice_index]).normal(0.0, params.referral_practice_sd)
    person = (
        np.log(params.referral_daily_hazard)
        + practice_effect
        + np.log(np.asarray(params.referral_by_imd_quintile))[quintile - 1]
        + np.where(sex == "F", np.log(params.referral_female), 0.0)
        + np.where(age < 18, np.log(params.referral_under_18), 0.0)
        + np.where(age >= 65, np.log(params.referral_65_plus), 0.0)
    ).astype(np.float32)
    log_hazard += person[:, None]
    if params.referral_unobserved_need:
        log_hazard += params.referral_unobserved_need * np.log(need[:, start:])
    hazard = np.exp(log_hazard) * registered[:, start:]
    del log_hazard
    hit = rng.random(hazard.shape, dtype=np.float32) < hazard
    del hazard
    referred = hit.any(axis=1) & (care_home < 0)
    return np.where(referred, start + hit.argmax(axis=1), -1)


def _expected_falls(
    params: Parameters,
    referral_day: np.ndarray,
    first_attendance_day: np.ndarray,
    gp_rate: np.ndarray,
    call_rate: np.ndarray,
    days: int,
) -> dict[tuple[str, int], np.ndarray]:
    """Per person and window, the expected events engagement removes in [referral, referral + window)
    (NaN for people not referred, 0 for referred people who do not engage in the window)."""
    n = referral_day.size
    falls = {(outcome, window): np.full(n, np.nan) for outcome in ("gp_consultations", "calls_999", "see_and_convey")
             for window in OUTCOME_WINDOWS}
    for person in np.nonzero(referral_day >= 0)[0]:
        day, first = int(referral_day[person]), int(first_attendance_day[person])
        for window in OUTCOME_WINDOWS:
            gp = calls = 0.0
            end = min(day + window, days)
            if 0 <= first < end:
                gp = params.effect_gp * float(gp_rate[person, first:end].sum())
                calls = params.effect_999 * float(call_rate[person, first:end].sum())
            falls[("gp_consultations", window)][person] = gp
            falls[("calls_999", window)][person] = calls
            falls[("see_and_convey", window)][person] = SEE_AND_CONVEY_SHARE * calls
    return falls


def _before_after(referral_day: np.ndarray, finished: np.ndarray, days: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per window, finished consultations in the window before and after each referral (-1 if none)."""
    result = {}
    for window in OUTCOME_WINDOWS:
        before = np.full(referral_day.size, -1)
        after = np.full(referral_day.size, -1)
        for person in np.nonzero(referral_day >= 0)[0]:
            day = int(referral_day[person])
            before[person] = int(finished[person, max(day - window, 0):day].sum())
            after[person] = int(finished[person, day:min(day + window, days)].sum())
        result[window] = (before, after)
    return result


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(person, day) of every event in a person x day count array, in person-then-day order."""
    rows, days = np.nonzero(counts)
    repeat = counts[rows, days]
    return np.repeat(rows, repeat), np.repeat(days, repeat)


def _appointment_events(
    rng: np.random.Generator, params: Parameters, finished: np.ndarray, not_finished: np.ndarray, age: np.ndarray
) -> dict[str, np.ndarray]:
    """One record per appointment: person, day, status, type, minute of day, day booked."""
    person_f, day_f = _expand(finished)
    person_n, day_n = _expand(not_finished)
    other = np.array([params.did_not_attend_share, params.cancelled_by_patient_share, params.cancelled_by_unit_share])
    status_n = 1 + rng.choice(3, person_n.size, p=other / other.sum())
    person = np.concatenate([person_f, person_n])
    day = np.concatenate([day_f, day_n])
    status = np.concatenate([np.zeros(person_f.size, dtype=np.int64), status_n])
    order = np.lexsort((day, person))
    person, day, status = person[order], day[order], status[order]
    old = age[person] >= 80
    kind = np.where(
        old,
        rng.choice(len(CONSULTATION_TYPES), person.size, p=_TYPE_WEIGHTS_80),
        rng.choice(len(CONSULTATION_TYPES), person.size, p=_TYPE_WEIGHTS),
    )
    minute = 8 * 60 + 10 * rng.integers(0, 63, person.size)
    booked = day - rng.integers(0, 15, person.size)
    other_code = np.where(status == STATUS_FINISHED, rng.random(person.size) < 0.15, False)
    return {
        "person": person, "day": day, "status": status, "type": kind, "minute": minute,
        "booked_day": booked, "other_code": other_code,
        "code_choice": rng.integers(0, 1000, person.size), "fault": np.zeros(person.size, dtype=np.int8),
    }


CODE_REFERRAL, CODE_DECLINED = 0, 1


def _code_events(rng: np.random.Generator, block: Block, days: int) -> dict[str, np.ndarray]:
    """Social prescribing codes: referral, a re-coding within the episode, declined."""
    person: list[int] = []
    day: list[int] = []
    kind: list[int] = []
    for column, code_kind in ((block.referral_day, CODE_REFERRAL), (block.recode_day, CODE_REFERRAL),
                              (block.declined_day, CODE_DECLINED)):
        rows = np.nonzero(column >= 0)[0]
        person.extend(rows.tolist())
        day.extend(column[rows].tolist())
        kind.extend([code_kind] * rows.size)
    order = np.lexsort((np.array(day, dtype=np.int64), np.array(person, dtype=np.int64))) if person else np.array([], dtype=np.int64)
    return {
        "person": np.array(person, dtype=np.int64)[order],
        "day": np.array(day, dtype=np.int64)[order],
        "kind": np.array(kind, dtype=np.int64)[order],
        "fault": np.zeros(len(person), dtype=np.int8),
    }


ARP = np.array(["C1", "C2", "C3", "C4", "C5"])
_ARP_WEIGHTS = np.array([0.08, 0.45, 0.30, 0.07, 0.10])
OUTCOMES = np.array(["hear_and_treat", "see_and_treat", "see_and_convey"])
HOSPITALS = np.array(["R0A", "R0A", "R0A", "RM3", "RWJ"])


def _call_events(rng: np.random.Generator, calls: np.ndarray, care_home: np.ndarray) -> dict[str, np.ndarray]:
    """One record per 999 call: person, day, second of day, category, outcome, revisions."""
    person, day = _expand(calls)
    size = person.size
    arp = rng.choice(5, size, p=_ARP_WEIGHTS)
    outcome = np.where(arp == 4, 0, rng.choice(3, size, p=[0.10, 0.35, 0.55]))
    # a share of conveyances are first sent as see-and-treat and revised in a later file
    provisional = (outcome == 2) & (rng.random(size) < 0.15)
    return {
        "person": person, "day": day,
        "second": rng.integers(0, 86400, size),
        "arp": arp, "outcome": outcome, "provisional": provisional,
        "hospital": rng.integers(0, len(HOSPITALS), size),
        "complaint": rng.integers(0, 1000, size),
        "communal": care_home[person] >= 0,
        "fault": np.zeros(size, dtype=np.int8),
    }


def _session_events(rng, params, grid, block, self_start, delay, next_session) -> dict[str, np.ndarray]:
    """VCSE register rows: attended sessions, and did-not-attend rows where services record them."""
    person: list[int] = []
    day: list[int] = []
    attended: list[bool] = []
    T = grid.days

    def series(row: int, first: int) -> None:
        service = SERVICES[block.service[row]]
        current = first
        person.append(row), day.append(current), attended.append(True)
        while True:
            current += 7
            if current >= T or rng.random() < params.dropout_per_week:
                return
            came = rng.random() < params.attend_probability
            if came or rng.random() < service.records_dna:
                person.append(row), day.append(current), attended.append(came)

    for row in np.nonzero(block.first_attendance_day >= 0)[0]:
        series(int(row), int(block.first_attendance_day[row]))
    for row in np.nonzero(self_start >= 0)[0]:
        series(int(row), int(self_start[row]))
    # some referred people book a first session and never come
    no_shows = np.nonzero((block.referral_day >= 0) & (block.first_attendance_day < 0) & (block.declined_day < 0))[0]
    for row in no_shows:
        booked = int(next_session(np.array([block.referral_day[row] + delay[row]]))[0])
        if booked < T and rng.random() < 0.3:
            person.append(int(row)), day.append(booked), attended.append(False)
    order = np.lexsort((np.array(day, dtype=np.int64), np.array(person, dtype=np.int64))) if person else np.array([], dtype=np.int64)
    person_a = np.array(person, dtype=np.int64)[order]
    return {
        "person": person_a,
        "day": np.array(day, dtype=np.int64)[order],
        "attended": np.array(attended, dtype=bool)[order],
        # referred people's rows are always identifiable; some self-referred rows are not
        "unlinkable": np.where(block.self_referred[person_a], rng.random(person_a.size) < 0.1, False)
        if person_a.size else np.zeros(0, dtype=bool),
        "wellbeing": rng.integers(3, 9, person_a.size),
        "note": rng.integers(0, 1000, person_a.size),
        "fault": np.zeros(person_a.size, dtype=np.int8),
    }


def _mark_faults(rng: np.random.Generator, params: Parameters, block: Block, days: int) -> None:
    """Choose which records carry an injected fault; writers render them, truth excludes them."""
    rate = params.error_rate
    if rate <= 0:
        return
    appointments = block.appointments
    draw = rng.random(appointments["person"].size)
    appointments["fault"][:] = np.select(
        [draw < rate / 3, draw < 2 * rate / 3, draw < rate], [FAULT_DATE, FAULT_CATEGORY, FAULT_CATEGORY_2], FAULT_NONE
    )
    codes = block.codes
    codes["fault"][:] = np.where(rng.random(codes["person"].size) < rate, FAULT_DATE, FAULT_NONE)
    # a mistyped NHS number on the GP record: only for people whose record is never re-sent
    # (no referral, no VCSE, never leaving), so that its effect on the truth is plain
    eligible = (
        (block.referral_day < 0) & ~block.self_referred & (block.leave_day >= days)
        & np.array([number is not None for number in block.nhs_number])
    )
    block.patient_fault[:] = np.where(eligible & (rng.random(eligible.size) < rate), FAULT_NHS, FAULT_NONE)
    calls = block.calls
    draw = rng.random(calls["person"].size)
    traced = np.array([block.nhs_number[p] is not None for p in calls["person"]], dtype=bool)
    calls["fault"][:] = np.select(
        [(draw < rate / 4) & traced, draw < rate / 2, draw < 3 * rate / 4, draw < rate],
        [FAULT_NHS, FAULT_DOB, FAULT_CATEGORY, FAULT_CATEGORY_2],
        FAULT_NONE,
    )
    sessions = block.sessions
    draw = rng.random(sessions["person"].size)
    sessions["fault"][:] = np.select(
        [draw < rate / 4, draw < rate / 2, draw < 3 * rate / 4, draw < rate],
        [FAULT_DATE, FAULT_CATEGORY, FAULT_RANGE, FAULT_NHS],
        FAULT_NONE,
    )
