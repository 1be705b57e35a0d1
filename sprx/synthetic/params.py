"""The parameters of the synthetic ICS, and the causal story they encode.

The story (written to ``truth.json`` with the values used):

1. Everyone has a baseline rate of GP appointments (by age, sex, deprivation and a personal
   frailty) and of 999 calls. On top of it, "need" comes in episodes (a bereavement, a crisis):
   an episode multiplies both rates and then fades. People join practices, move away and die
   at the rates below; a person who leaves or dies stops generating events.
2. A GP refers a person to social prescribing with a daily hazard (the referral model below)
   that reads only what the warehouse can also read on the referral day: the person's finished
   GP consultations in each of the eight 91-day quarters before it (recent quarters weigh more,
   so a rising trend raises the hazard), their 999 calls in the four quarters before it, age,
   sex, IMD quintile and practice. People are therefore referred at a peak of need, and their use
   falls afterwards anyway as the episode fades: regression to the mean.
3. Optionally (``referral_unobserved_need``, default 0) the hazard also rises with the person's
   current latent need, which no feed shows: an unobserved confounder, for sensitivity analyses.
   With the default, referral is random given the observed history (selection on observables,
   stated here so that nobody mistakes it for a fact about the real world), so a comparison
   matched on that history recovers the true effect.
4. Some referred people decline; of the rest, some engage with a VCSE service. From their first
   attendance, engaged people's GP appointments and 999 calls fall by the true effect sizes.
   Referral changes nothing except through engagement (the exclusion restriction of an
   instrumental-variable analysis), and nobody engages without a referral in the analysis.

The referral model, per person and day d (log of the daily hazard):

    log(referral_daily_hazard)
    + sum over k = 1..8 of referral_gp_quarter_weights[k] * log(1 + finished GP consultations
      in [d - 91k, d - 91(k-1)))
    + referral_999_weight * log(1 + 999 calls in [d - 364, d))
    + log(referral_by_imd_quintile[quintile]) + log(referral_female) if female
    + log(referral_under_18) if under 18 + log(referral_65_plus) if 65 or over
    + practice effect (normal, sd referral_practice_sd, one draw per practice)
    + referral_unobserved_need * log(latent need multiplier on day d)

A person is referred at most once; care-home residents are never referred.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

# The history the referral model (and the warehouse's matching) reads: quarters of 91 days.
QUARTER_DAYS = 91
LOOKBACK_QUARTERS = 8
LOOKBACK_DAYS = QUARTER_DAYS * LOOKBACK_QUARTERS  # 728: "two years" of history before a referral
# Outcome windows, in days before and after the referral date.
OUTCOME_WINDOWS = (90, 180, 365)
# Share of 999 calls that end in see-and-convey (calls not in category C5, 0.9, times 0.55).
SEE_AND_CONVEY_SHARE = 0.9 * 0.55

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
    # First and last day of feed deliveries. GP history starts a year before `start`; four years of
    # feeds give two years of history before a referral and a year of follow-up after it.
    start: dt.date = dt.date(2022, 11, 1)
    end: dt.date = dt.date(2026, 10, 31)
    # Share of delivered rows carrying an injected fault (bad check digit, impossible date, ...).
    error_rate: float = 0.005

    # --- delivery cadence -------------------------------------------------------------------
    # Days between EMIS full-refresh exports kept in the feed (the last one is at `end`).
    emis_every_days: int = 365
    # Days between SystmOne delta extracts (1 = nightly, as the real feed runs).
    systmone_every_days: int = 28
    # Days between ambulance incident files (weekly, as the real feed runs). Each file covers the 28 days
    # before it, so any cadence up to 28 days leaves no gap; 28 gives files that do not overlap.
    ambulance_every_days: int = 7
    # Share of SystmOne deliveries sent as a .zip instead of a folder.
    systmone_zip_share: float = 0.5
    # Make `end` one night's deliveries of every feed (EMIS exports on `end` and the day before,
    # SystmOne deltas on both, an ambulance file and the VCSE sheets of `end`'s month); listed in truth.json.
    following_day: bool = False
    # EMIS reporting period in months: events older than this drop out of an export. Long enough
    # by default for two years of history before a referral plus a year of follow-up.
    emis_reporting_months: int = 60

    # --- population -------------------------------------------------------------------------
    # Yearly chance of leaving the practice list by moving away (deaths are on top, below).
    leave_rate_per_year: float = 0.04
    # Yearly chance of dying at age 65; it doubles every `death_doubling_years` of age (Gompertz).
    death_rate_per_year_at_65: float = 0.012
    death_doubling_years: float = 8.0
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

    # --- referral (the model is written out in the module docstring) ------------------------
    # Daily referral hazard for a man aged 18-64 in IMD quintile 3 with no GP or 999 use.
    referral_daily_hazard: float = 0.0000025
    # Weights of log(1 + finished GP consultations) in each 91-day quarter before the day, the
    # most recent first: recent use weighs more, so rising use raises the hazard.
    referral_gp_quarter_weights: tuple[float, ...] = (0.9, 0.5, 0.35, 0.25, 0.15, 0.1, 0.1, 0.05)
    # Weight of log(1 + 999 calls in the 364 days before the day).
    referral_999_weight: float = 0.4
    # Multipliers by IMD quintile 1 (most deprived) to 5.
    referral_by_imd_quintile: tuple[float, ...] = (1.8, 1.4, 1.0, 0.8, 0.6)
    # Multipliers for women, under-18s (rarely referred) and people 65 or over.
    referral_female: float = 1.2
    referral_under_18: float = 0.15
    referral_65_plus: float = 1.3
    # Spread (sd of the log multiplier) of practices' referral habits.
    referral_practice_sd: float = 0.3
    # The unobserved confounder: weight of log(latent need) in the log hazard (0 = none).
    referral_unobserved_need: float = 0.0
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
        if not 1 <= self.ambulance_every_days <= 28:
            raise ValueError(f"--ambulance-every must be 1 to 28 days: each file covers 28 days "
                             f"(got {self.ambulance_every_days})")
        if len(self.referral_gp_quarter_weights) != LOOKBACK_QUARTERS:
            raise ValueError(f"referral_gp_quarter_weights needs {LOOKBACK_QUARTERS} weights")

    def to_json(self) -> dict:
        """The parameters as JSON-ready values."""
        values = asdict(self)
        values["start"] = self.start.isoformat()
        values["end"] = self.end.isoformat()
        if not self.following_day:  # absent unless asked for, so earlier arguments give the same bytes
            del values["following_day"]
        return values
