"""The parameters of the synthetic ICS, and the causal story they encode.

The story (written to ``truth.json`` with the values used):

1. Everyone has a baseline rate of GP appointments (by age, sex, deprivation and a personal
   frailty) and of 999 calls. On top of it, "need" comes in episodes (a bereavement, a crisis):
   an episode multiplies both rates and then fades.
2. A GP refers a person to social prescribing with a daily chance that rises with the person's
   finished GP consultations in the previous 365 days (in the bands below) and with deprivation.
   So people are referred at a peak of need, and their use falls afterwards anyway as the episode
   fades: regression to the mean.
3. Referral depends on nothing else about need: within a practice, sex, age band, IMD quintile
   and prior-year consultation band, who is referred is down to chance. A matched comparison
   group on exactly those variables therefore removes the regression to the mean, and a
   difference in differences recovers the true effect (selection on observables, stated here so
   that nobody mistakes it for a fact about the real world).
4. Some referred people decline; of the rest, some engage with a VCSE service. From their first
   attendance, engaged people's GP appointments and 999 calls fall by the true effect sizes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

# Prior-year finished GP consultation bands: (lowest count, label). Matching uses the same bands.
CONSULTATION_BANDS: tuple[tuple[int, str], ...] = (
    (0, "0"),
    (1, "1-2"),
    (3, "3-5"),
    (6, "6-9"),
    (10, "10-14"),
    (15, "15+"),
)
# Age bands used for rates, referral and matching: (lowest age, label).
AGE_BANDS: tuple[tuple[int, str], ...] = (
    (0, "0-17"),
    (18, "18-34"),
    (35, "35-49"),
    (50, "50-64"),
    (65, "65-79"),
    (80, "80+"),
)


@dataclass(frozen=True)
class Parameters:
    """Every knob of the generator; defaults make a plausible Trafford-like ICS."""

    # Number of people registered at the start (joiners add to this over the period).
    people: int = 4000
    # Seed of every random draw; the same seed and parameters give the same bytes.
    seed: int = 20261122
    # First and last day of feed deliveries. GP history starts a year before `start`.
    start: dt.date = dt.date(2024, 11, 1)
    end: dt.date = dt.date(2026, 10, 31)
    # Share of delivered rows carrying an injected fault (bad check digit, impossible date, ...).
    error_rate: float = 0.005

    # --- delivery cadence -------------------------------------------------------------------
    # Days between EMIS full-refresh exports kept in the feed (the last one is at `end`).
    emis_every_days: int = 365
    # Days between SystmOne delta extracts (1 = nightly, as the real feed runs).
    systmone_every_days: int = 28
    # Share of SystmOne deliveries sent as a .zip instead of a folder.
    systmone_zip_share: float = 0.5
    # Make `end` one night's deliveries of every feed (EMIS exports on `end` and the day before,
    # SystmOne deltas on both, an ambulance file and the VCSE sheets of `end`'s month); listed in truth.json.
    following_day: bool = False
    # EMIS reporting period in months: events older than this drop out of an export.
    emis_reporting_months: int = 36

    # --- population -------------------------------------------------------------------------
    # Yearly chance of leaving the practice list (moving away, death).
    leave_rate_per_year: float = 0.04
    # Joiners during the period, as a share of `people` per year.
    join_rate_per_year: float = 0.04
    # Share of patients with no NHS number on the GP record (temporary residents).
    missing_nhs_number_share: float = 0.01

    # --- GP use -------------------------------------------------------------------------
    # Mean GP appointments per person-year for a 35-49 year old, before other multipliers.
    gp_appointments_per_year: float = 4.0
    # Shape of the gamma-distributed personal frailty (mean 1): smaller = more spread.
    frailty_shape: float = 3.0
    # Need episodes per person-year; each multiplies GP and 999 rates and then fades.
    need_episodes_per_year: float = 0.12
    # Peak multiplier of a need episode, and the mean days it takes to fade (exponential).
    need_peak_multiplier: float = 8.0
    need_fade_days: float = 120.0
    # Share of appointments by final status (the rest finish).
    did_not_attend_share: float = 0.05
    cancelled_by_patient_share: float = 0.04
    cancelled_by_unit_share: float = 0.03

    # --- referral -------------------------------------------------------------------------
    # Daily referral hazard for the reference person (band 3-5, IMD quintile 3, adult).
    referral_daily_hazard: float = 0.000007
    # Multipliers of the hazard by prior-year consultation band (same order as CONSULTATION_BANDS).
    referral_by_consultation_band: tuple[float, ...] = (0.05, 0.3, 1.0, 4.0, 12.0, 25.0)
    # Multipliers by IMD quintile 1 (most deprived) to 5.
    referral_by_imd_quintile: tuple[float, ...] = (1.8, 1.4, 1.0, 0.8, 0.6)
    # Multiplier for under-18s (rarely referred).
    referral_under_18: float = 0.15
    # Share of referred people who decline.
    declined_share: float = 0.2
    # Share of those not declining who attend a VCSE session at least once.
    engaged_share: float = 0.65
    # Share of referred people whose referral is coded a second time within the episode.
    recoded_share: float = 0.05

    # --- the true effect ----------------------------------------------------------------------
    # Relative fall in GP appointments from first VCSE attendance, among engaged people.
    effect_gp: float = 0.25
    # Relative fall in 999 calls from first VCSE attendance, among engaged people.
    effect_999: float = 0.20

    # --- ambulance -------------------------------------------------------------------------
    # Mean 999 calls per person-year for an adult 35-49, before other multipliers.
    calls_per_year: float = 0.12
    # Share of adults who call very often (frequent callers), and their calls per year.
    frequent_caller_share: float = 0.004
    frequent_caller_calls_per_year: float = 45.0
    # Share of calls from untraced callers (no NHS number, date of birth or postcode).
    untraced_call_share: float = 0.04
    # Care homes (communal addresses) and residents per home.
    care_homes: int = 2
    care_home_residents: int = 30
    # Calls per resident-year from a care home.
    care_home_calls_per_year: float = 7.0

    # --- VCSE -------------------------------------------------------------------------------
    # Share of people not referred who come to a VCSE service by themselves, per year.
    self_referral_share_per_year: float = 0.01
    # Chance an enrolled person attends a given weekly session, and drops out after it.
    attend_probability: float = 0.8
    dropout_per_week: float = 0.15
    # Mean days from referral to first attendance (beyond a 7-day minimum).
    days_to_first_attendance: float = 20.0

    # Free-form label recorded in truth.json.
    label: str = field(default="sprx synthetic ICS")

    def check(self) -> None:
        """Refuse nonsense with one clear line (raised as ValueError)."""
        if self.people < 1:
            raise ValueError(f"--people must be at least 1 (got {self.people})")
        if self.end < self.start:
            raise ValueError(f"--end ({self.end}) is before --start ({self.start})")
        if (self.end - self.start).days < 28:
            raise ValueError("the period from --start to --end must be at least 28 days")
        if not 0 <= self.error_rate <= 0.2:
            raise ValueError(f"--error-rate must be between 0 and 0.2 (got {self.error_rate})")
        if self.start.year < 1990 or self.end.year > 2100:
            raise ValueError("--start and --end must fall between 1990 and 2100")
        if self.emis_every_days < 1 or self.systmone_every_days < 1:
            raise ValueError("delivery cadences must be at least 1 day")

    def to_json(self) -> dict:
        """The parameters as JSON-ready values."""
        values = asdict(self)
        values["start"] = self.start.isoformat()
        values["end"] = self.end.isoformat()
        if not self.following_day:  # absent unless asked for, so earlier arguments give the same bytes
            del values["following_day"]
        return values
