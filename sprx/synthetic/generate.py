"""Generate a synthetic ICS: simulate practice by practice, write the feeds, state the truth.

The output folder mirrors ``landing/`` (``gp/emis``, ``gp/systmone``, ``ambulance``,
``vcse/<service>``) plus ``truth.json``. It is written under a temporary name and renamed at
the end, so a folder that looks complete is complete.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sprx.synthetic.identity import TEST_RANGE_SIZE, NhsNumbers
from sprx.synthetic.params import AGE_BANDS, CONSULTATION_BANDS, LOOKBACK_DAYS, OUTCOME_WINDOWS, QUARTER_DAYS, Parameters
from sprx.synthetic.places import Practice, load_places
from sprx.synthetic.vcse_services import SERVICES
from sprx.synthetic.world import CODE_DECLINED, CODE_REFERRAL, FAULT_NONE, Block, Grid, simulate_block
from sprx.synthetic.writers import AmbulanceWriter, EmisWriter, Fault, SystmOneWriter, VcseWriter, months_before

# People simulated together; bounds memory (about 60 MB per person-day array at three years).
BLOCK_SIZE = 5000
# Definitions the truth is counted by; the warehouse must use the same ones.
EPISODE_WINDOW_DAYS = 180  # a referral code within this many days of an episode's start joins it
ENGAGEMENT_WINDOW_DAYS = 180  # first attendance must fall within this many days of the referral
SUSTAINED_WINDOW_DAYS = 90  # sessions counted from the first attendance
SUSTAINED_SESSIONS = 3  # attended sessions in that window that make engagement sustained
FREQUENT_CALLER_RULES = {
    "adult_calls_in_calendar_month": 5,
    "adult_calls_in_3_calendar_months": 12,
    "under_18_calls_in_6_calendar_months": 3,
    "communal_address_calls_in_calendar_month": 15,
}


class OutputError(ValueError):
    """The output folder cannot be used."""


def _check_output(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"--out {out_dir} is a file, not a folder; choose a folder path")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise OutputError(f"--out {out_dir} is not empty; choose a new folder or pass --overwrite")
    if not out_dir.parent.exists():
        raise OutputError(f"the parent folder of --out ({out_dir.parent}) does not exist")


def generate(
    out_dir: Path,
    params: Parameters,
    *,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Write the feeds and truth.json for `params` into `out_dir`; return the truth."""
    params.check()
    out_dir = Path(out_dir).resolve()
    _check_output(out_dir, overwrite)
    partial = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    try:
        truth = _generate_into(partial, params, progress or (lambda message: None))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        partial.rename(out_dir)
    finally:
        if partial.exists():
            shutil.rmtree(partial)
    return truth


def _generate_into(root: Path, params: Parameters, progress: Callable[[str], None]) -> dict:
    places = load_places()
    grid = Grid.for_params(params)
    practices = list(places.practices)
    world_rng = np.random.default_rng([params.seed, 0])
    size_weights = world_rng.lognormal(0.0, 0.45, len(practices))
    people = world_rng.multinomial(params.people, size_weights / size_weights.sum())
    years = grid.days / 365.0
    joiners = world_rng.poisson(people * params.join_rate_per_year * years)
    homes = [places.postcodes[i] for i in world_rng.choice(len(places.postcodes), params.care_homes, replace=False)]
    home_practice = [(7 * home) % len(practices) for home in range(params.care_homes)]
    imd = {postcode: places.lsoa_imd_decile[places.postcode_lsoa[postcode]] for postcode in places.postcodes}
    nhs_numbers = NhsNumbers(params.seed)

    faults: list[Fault] = []
    emis_practices = [p for p in practices if p.system == "emis"]
    systmone_practices = [p for p in practices if p.system == "systmone"]
    emis = EmisWriter(root, grid, params, emis_practices, faults)
    systmone = SystmOneWriter(root, grid, params, systmone_practices, faults)
    ambulance = AmbulanceWriter(root, grid, params, faults)
    vcse = VcseWriter(root, grid, params, faults)
    truth = TruthCounter(params, grid, ambulance)

    person_key = 0
    for index, practice in enumerate(practices):
        progress(f"practice {practice.code} ({index + 1}/{len(practices)}): {people[index]} people")
        local_id = 10_000 + 1_000 * index if practice.system == "emis" else 7_000 + 100_000 * index
        total, joining = int(people[index]), int(joiners[index])
        residents = [params.care_home_residents if home_practice[h] == index else 0 for h in range(params.care_homes)]
        blocks = max(1, -(-(total + joining) // BLOCK_SIZE))
        for part in range(blocks):
            n_people = total // blocks + (1 if part < total % blocks else 0)
            n_joiners = joining // blocks + (1 if part < joining % blocks else 0)
            rng = np.random.default_rng([params.seed, index + 1, part])
            block = simulate_block(
                rng=rng, params=params, grid=grid, practice_index=index,
                n_people=n_people, n_joiners=n_joiners, person_key_start=person_key, local_id_start=local_id,
                postcodes=list(places.postcodes), postcode_imd=imd,
                care_home_postcodes=homes, care_home_residents=residents if part == 0 else [0] * params.care_homes,
                nhs_numbers=nhs_numbers,
            )
            person_key += len(block.person_key)
            local_id += len(block.person_key)
            untraced = rng.random(block.calls["person"].size) < params.untraced_call_share
            (emis if practice.system == "emis" else systmone).add(block, practice)
            ambulance.add(block, untraced)
            vcse.add(block)
            truth.add(block, practice, untraced, homes)
    progress("finishing files")
    ambulance.add_clock_change_calls()
    emis.finish(emis_practices)
    systmone.finish(systmone_practices)
    ambulance.finish()
    vcse.finish()
    result = truth.result(practices, faults, nhs_numbers_exhausted=person_key > TEST_RANGE_SIZE * 0.9)
    if params.following_day:
        result["following_day"] = _following_day_files(root, grid, emis, emis_practices, systmone,
                                                       systmone_practices, ambulance, vcse)
    with open(root / "truth.json", "w", encoding="utf-8", newline="\n") as out:
        json.dump(result, out, indent=1, sort_keys=True, ensure_ascii=False)
        out.write("\n")
    return result


def _following_day_files(root: Path, grid: Grid, emis: EmisWriter, emis_practices: list[Practice],
                         systmone: SystmOneWriter, systmone_practices: list[Practice], ambulance: AmbulanceWriter,
                         vcse: VcseWriter) -> list[str]:
    """The relative paths of the last night's deliveries of every feed (held back to time a nightly run)."""
    last = grid.days - 1
    files = [f"gp/emis/{emis.file_name(practice, last)}" for practice in emis_practices]
    for practice in systmone_practices:
        folder = f"gp/systmone/{systmone.folder(practice, len(systmone.delivery_days) - 1)}"
        files += [path for path in (folder, folder + ".zip") if (root / path).exists()]
    files.append(f"ambulance/{ambulance.file_name(last)}")
    files += vcse.last_month_files
    return sorted(files)


OUTCOMES = ("gp_consultations", "calls_999", "see_and_convey")


class TruthCounter:
    """Counts what the warehouse should find, by the definitions it must use."""

    def __init__(self, params: Parameters, grid: Grid, ambulance: AmbulanceWriter) -> None:
        self.params = params
        self.grid = grid
        self.ambulance = ambulance
        final_export = grid.date(grid.days - 1)
        self.emis_cutoff = (months_before(final_export, params.emis_reporting_months) - grid.day0).days
        self.counts = {
            "people_simulated": 0, "registered_at_end": 0, "people_without_nhs_number": 0,
            "referral_episodes": 0, "referred_people": 0, "declined": 0, "engaged": 0, "sustained": 0,
            "vcse_attendances": 0, "vcse_did_not_attend_rows": 0, "vcse_unlinkable_rows": 0,
            "frequent_callers": 0, "frequent_callers_referred": 0, "frequent_caller_communal_addresses": 0,
            "ambulance_incidents_traced": 0,
        }
        self.by_practice: dict[str, dict[str, int]] = {}
        self.by_quintile: dict[int, dict[str, int]] = {q: {"registered_at_end": 0, "referral_episodes": 0,
                                                           "engaged": 0} for q in range(1, 6)}
        self.frequent_by_month: dict[str, int] = {}
        self.communal_calls: dict[tuple[str, int, int], int] = {}
        # (outcome, window) -> [referrals, expected fall, engaged referrals, naive after - before]
        self.estimands: dict[tuple[str, int], list[float]] = {
            (outcome, window): [0, 0.0, 0, 0.0]
            for outcome in OUTCOMES for window in OUTCOME_WINDOWS}
        self.population_changes = {"joined": 0, "moved_away": 0, "died": 0}
        # the spans the warehouse observes: GP history from day 0 (EMIS: the final export's report
        # period), 999 calls over the ambulance files' true coverage
        self.ambulance_from = ambulance.first_covered_day
        self.ambulance_to = int(ambulance.file_days[-1]) if ambulance.file_days.size else 0

    def add(self, block: Block, practice: Practice, untraced: np.ndarray, homes: list[str]) -> None:
        T = self.grid.days
        n = len(block.person_key)
        # on a practice list at the end, and not quarantined for a mistyped NHS number on the GP record
        at_end = (block.leave_day >= T) & (block.patient_fault == FAULT_NONE)
        counts = self.counts
        counts["people_simulated"] += n
        counts["registered_at_end"] += int(at_end.sum())
        counts["people_without_nhs_number"] += sum(1 for number in block.nhs_number if number is None)
        practice_counts = self.by_practice.setdefault(
            practice.code, {"registered_at_end": 0, "referral_episodes": 0, "declined": 0, "engaged": 0,
                            "sustained": 0})
        practice_counts["registered_at_end"] += int(at_end.sum())
        quintile = (block.imd_decile + 1) // 2
        for q in range(1, 6):
            self.by_quintile[q]["registered_at_end"] += int((at_end & (quintile == q)).sum())
        left = block.leave_day < T
        self.population_changes["joined"] += int((block.join_day > 0).sum())
        self.population_changes["died"] += int((left & block.died).sum())
        self.population_changes["moved_away"] += int((left & ~block.died).sum())

        cutoff = self.emis_cutoff if practice.system == "emis" else 0
        codes, sessions = block.codes, block.sessions
        code_start = np.searchsorted(codes["person"], np.arange(n + 1))
        session_start = np.searchsorted(sessions["person"], np.arange(n + 1))
        ok = sessions["fault"] == FAULT_NONE
        counts["vcse_attendances"] += int((sessions["attended"] & ok).sum())
        counts["vcse_did_not_attend_rows"] += int((~sessions["attended"] & ok).sum())
        counts["vcse_unlinkable_rows"] += int((sessions["unlinkable"] & ok).sum())
        referred_people = set()
        for person in np.nonzero(at_end & (block.referral_day >= 0))[0]:
            span = range(code_start[person], code_start[person + 1])
            kept = [c for c in span if codes["fault"][c] == FAULT_NONE and codes["day"][c] >= cutoff]
            referral_days = sorted(int(codes["day"][c]) for c in kept if codes["kind"][c] == CODE_REFERRAL)
            declined_days = [int(codes["day"][c]) for c in kept if codes["kind"][c] == CODE_DECLINED]
            attended_days = sorted(
                int(sessions["day"][s]) for s in range(session_start[person], session_start[person + 1])
                if sessions["attended"][s] and sessions["fault"][s] == FAULT_NONE)
            episode_start = None
            for day in referral_days:
                if episode_start is not None and day - episode_start < EPISODE_WINDOW_DAYS:
                    continue
                episode_start = day
                referred_people.add(person)
                counts["referral_episodes"] += 1
                practice_counts["referral_episodes"] += 1
                self.by_quintile[int(quintile[person])]["referral_episodes"] += 1
                if any(day <= d < day + EPISODE_WINDOW_DAYS for d in declined_days):
                    counts["declined"] += 1
                    practice_counts["declined"] += 1
                engaged = [d for d in attended_days if day <= d <= day + ENGAGEMENT_WINDOW_DAYS]
                if day == block.referral_day[person]:
                    self._add_estimands(block, int(person), day, bool(engaged), max(cutoff, 0))
                if engaged:
                    counts["engaged"] += 1
                    practice_counts["engaged"] += 1
                    self.by_quintile[int(quintile[person])]["engaged"] += 1
                    first = engaged[0]
                    if sum(1 for d in attended_days if first <= d < first + SUSTAINED_WINDOW_DAYS) >= SUSTAINED_SESSIONS:
                        counts["sustained"] += 1
                        practice_counts["sustained"] += 1
        counts["referred_people"] += len(referred_people)
        self._frequent_callers(block, untraced, referred_people)

    def _add_estimands(self, block: Block, person: int, day: int, engaged: bool, gp_from: int) -> None:
        """Add one referral to each outcome x window whose protocol it meets (docs/methods.md): two
        years of GP and 999 history observed before the index date, and the window observed after."""
        if day - LOOKBACK_DAYS < max(gp_from, self.ambulance_from):
            return
        linked = block.nhs_number[person] is not None  # 999 calls link by NHS number only
        visible_calls = (1 - self.params.untraced_call_share) if linked else 0.0
        for (outcome, window), sums in self.estimands.items():
            observed_to = self.grid.days if outcome == "gp_consultations" else self.ambulance_to
            if day + window > observed_to:
                continue
            fall = float(block.expected_fall[(outcome, window)][person])
            sums[0] += 1
            sums[1] += fall if outcome == "gp_consultations" else fall * visible_calls
            sums[2] += engaged
            if outcome == "gp_consultations":
                before, after = block.gp_before_after[window]
                sums[3] += int(after[person]) - int(before[person])

    def _frequent_callers(self, block: Block, untraced: np.ndarray, referred_people: set[int]) -> None:
        """Apply the national frequent-caller definition to the calls the warehouse will hold."""
        calls = block.calls
        delivered = np.array([self.ambulance.delivered(int(day)) for day in calls["day"]], dtype=bool)
        has_number = np.array([block.nhs_number[p] is not None for p in calls["person"]], dtype=bool)
        kept = delivered & ~untraced & has_number & (calls["fault"] == FAULT_NONE)
        self.counts["ambulance_incidents_traced"] += int(kept.sum())
        months: dict[int, dict[int, int]] = {}
        last_call: dict[tuple[int, int], dt.date] = {}  # (person, month) -> date of the month's last call
        for c in np.nonzero(kept)[0]:
            date = self.grid.date(int(calls["day"][c]))
            month = date.year * 12 + date.month - 1
            person = int(calls["person"][c])
            months.setdefault(person, {})
            months[person][month] = months[person].get(month, 0) + 1
            last_call[(person, month)] = max(last_call.get((person, month), date), date)
        # an untraced call's postcode is blank in the feed, so only traced calls count for an address
        for c in np.nonzero(kept & calls["communal"])[0]:
            date = self.grid.date(int(calls["day"][c]))
            key = (block.postcode[int(calls["person"][c])], date.year, date.month)
            self.communal_calls[key] = self.communal_calls.get(key, 0) + 1
        rules = FREQUENT_CALLER_RULES
        for person, by_month in months.items():
            flagged = []
            dob = block.dob[person].item()
            for month in sorted(by_month):  # a person is flagged in a month in which they called
                year, month0 = divmod(month, 12)
                at = last_call[(person, month)]  # age at the month's last call: the warehouse keeps ages at calls
                age = at.year - dob.year - ((at.month, at.day) < (dob.month, dob.day))
                window = lambda size: sum(by_month.get(m, 0) for m in range(month - size + 1, month + 1))  # noqa: E731
                if age < 18:
                    hit = window(6) >= rules["under_18_calls_in_6_calendar_months"]
                else:
                    hit = (by_month.get(month, 0) >= rules["adult_calls_in_calendar_month"]
                           or window(3) >= rules["adult_calls_in_3_calendar_months"])
                if hit:
                    flagged.append(f"{year:04d}-{month0 + 1:02d}")
            if flagged:
                self.counts["frequent_callers"] += 1
                if person in referred_people:
                    self.counts["frequent_callers_referred"] += 1
                for label in flagged:
                    self.frequent_by_month[label] = self.frequent_by_month.get(label, 0) + 1

    def result(self, practices: list[Practice], faults: list[Fault], *, nhs_numbers_exhausted: bool) -> dict:
        communal = {(postcode) for (postcode, _, _), calls in self.communal_calls.items()
                    if calls >= FREQUENT_CALLER_RULES["communal_address_calls_in_calendar_month"]}
        self.counts["frequent_caller_communal_addresses"] = len(communal)
        effects: dict[str, object] = {}
        naive = {}
        for (outcome, window), (referrals, fall, engaged, change) in sorted(self.estimands.items()):
            itt = round(-fall / referrals, 4) if referrals else None
            effects[f"{outcome}_{window}d"] = {
                "referrals": int(referrals),
                "engaged_referrals": int(engaged),
                "itt_change_per_referral": itt,
                "effect_among_engaged": round(-fall / engaged, 4) if engaged else None,
                # the names earlier versions used, kept for readers of old truth files
                "referrals_with_complete_window": int(referrals),
                "expected_change_per_referral": itt,
            }
            if outcome == "gp_consultations":
                naive[f"gp_consultations_{window}d"] = {
                    "referrals": int(referrals),
                    "mean_after_minus_before": round(change / referrals, 4) if referrals else None,
                }
        effects["gp_consultations_relative_effect_among_engaged"] = -self.params.effect_gp
        effects["calls_999_relative_effect_among_engaged"] = -self.params.effect_999
        fault_rows = sorted((fault.to_json() for fault in faults), key=lambda f: (f["file"], f["row_number"]))
        kinds: dict[str, int] = {}
        for fault in fault_rows:
            kinds[fault["kind"]] = kinds.get(fault["kind"], 0) + 1
        return {
            "generator": "sprx sample",
            "parameters": self.params.to_json(),
            "story": (
                "Referral is more likely for people at a peak of need (many GP consultations in recent "
                "quarters, 999 calls in the past year) and in deprived areas; their use of GP and 999 services "
                "falls afterwards partly by regression to the mean and partly by the true effect among those "
                "who engage with a VCSE service. The daily referral hazard reads only history the warehouse "
                "can see (finished GP consultations in each of the 8 quarters before the day, 999 calls in the "
                "4 quarters before it, age, sex, IMD quintile, practice; sprx/synthetic/params.py), plus "
                "latent need with weight referral_unobserved_need (0 by default: no unobserved confounding)."
            ),
            "definitions": {
                "population": "people on a practice list at the end of the period (the current GP snapshot), "
                              "less GP records quarantined for an injected fault",
                "referral_episode": f"a referral code opens an episode unless one opened in the previous "
                                    f"{EPISODE_WINDOW_DAYS} days",
                "episode_window_days": EPISODE_WINDOW_DAYS,
                "declined": f"a declined code within {EPISODE_WINDOW_DAYS} days from the episode start",
                "engaged": f"an attended VCSE session from the episode start to {ENGAGEMENT_WINDOW_DAYS} days after it",
                "sustained": f"{SUSTAINED_SESSIONS}+ attended sessions in the {SUSTAINED_WINDOW_DAYS} days "
                             f"from the first attendance",
                "frequent_caller": "a traced person flagged in a calendar month (UK local date) in which they "
                                   "called, by the national definition; adult or under 18 by age at their last "
                                   "call in that month",
                "frequent_caller_rules": FREQUENT_CALLER_RULES,
                "consultation_bands": [label for _, label in CONSULTATION_BANDS],
                "age_bands": [label for _, label in AGE_BANDS],
                "faults_excluded": "every count leaves out the rows listed under injected_faults",
                "estimand_population": (
                    f"first referral episodes of people in the population whose referral date d has "
                    f"{LOOKBACK_DAYS} days ({LOOKBACK_DAYS // QUARTER_DAYS} quarters of {QUARTER_DAYS}) of GP and "
                    f"999 history observed before it, and whose outcome window [d, d + window) lies inside the "
                    f"outcome's observed span (GP: to the last extract; 999 and see-and-convey: to the day before "
                    f"the last ambulance file, whose files each cover the 28 days before their date)"
                ),
                "itt_change_per_referral": (
                    "the mean over those referrals of the expected change in events in [d, d + window) caused by "
                    "the referral (intention to treat: every referral counts, engaged or not); 999 outcomes count "
                    "only the calls the warehouse can link (traced callers with an NHS number)"
                ),
                "effect_among_engaged": (
                    "the same total change divided by the referrals that engaged (an attended VCSE session within "
                    f"{ENGAGEMENT_WINDOW_DAYS} days): the effect among those who engage, which an instrumental-"
                    "variable analysis with referral as the instrument estimates"
                ),
                "naive_before_after": "mean of (after - before) finished GP consultations over the same referrals",
            },
            "population_changes": self.population_changes,
            "counts": self.counts,
            "counts_by_practice": {
                code: {"system": next(p.system for p in practices if p.code == code), **values}
                for code, values in sorted(self.by_practice.items())
            },
            "counts_by_imd_quintile": {str(q): values for q, values in self.by_quintile.items()},
            "frequent_callers_by_month": dict(sorted(self.frequent_by_month.items())),
            "true_effect": effects,
            "naive_before_after": naive,
            "injected_faults": {"total_rows": len(fault_rows), "by_kind": dict(sorted(kinds.items())),
                                "rows": fault_rows},
            "notes": (["the NHS number test range ran out: later people have no NHS number"]
                      if nhs_numbers_exhausted else []),
            "vcse_services": [service.service_id for service in SERVICES],
        }
