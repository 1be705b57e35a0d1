"""The real places of the synthetic ICS: Trafford practices, their PCNs, postcodes and deprivation.

Read from the project's dbt seeds (``dbt_project/seeds``), which record each source and licence.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from sprx.settings import SEEDS_DIR

# The sub-ICB location whose practices the synthetic ICS uses: NHS Greater Manchester - Trafford.
SUB_ICB_CODE = "02A"
# Practices that must be on each system, to match the hand-made example feeds.
EMIS_FIXED = ("P91004",)
SYSTMONE_FIXED = ("P91006",)


@dataclass(frozen=True)
class Practice:
    code: str
    name: str
    postcode: str
    pcn_code: str
    system: str  # "emis" or "systmone"
    locality: str


@dataclass(frozen=True)
class Places:
    practices: tuple[Practice, ...]
    postcodes: tuple[str, ...]
    postcode_lsoa: dict[str, str]
    postcode_locality: dict[str, str]
    lsoa_imd_decile: dict[str, int]


def _rows(name: str, seeds_dir: Path) -> list[dict[str, str]]:
    with open(seeds_dir / name, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def load_places(seeds_dir: Path = SEEDS_DIR) -> Places:
    """Active Trafford practices (alternately EMIS and SystmOne), postcodes and IMD deciles."""
    postcodes = _rows("ref_postcode_lsoa21.csv", seeds_dir)
    postcode_lsoa = {row["postcode"]: row["lsoa21_code"] for row in postcodes}
    postcode_locality = {row["postcode"]: row["locality"] for row in postcodes}
    lsoas = set(postcode_lsoa.values())
    imd = {
        row["lsoa21_code"]: int(row["imd_decile"])
        for row in _rows("ref_imd2025_lsoa21.csv", seeds_dir)
        if row["lsoa21_code"] in lsoas
    }
    pcn = {
        row["practice_code"]: row["pcn_code"]
        for row in _rows("ref_pcn_memberships.csv", seeds_dir)
        if not row["end_date"]
    }
    active = sorted(
        (row for row in _rows("ref_gp_practices.csv", seeds_dir)
         if row["sub_icb_code"] == SUB_ICB_CODE and row["status_code"] == "A"),
        key=lambda row: row["practice_code"],
    )
    practices = []
    for index, row in enumerate(active):
        code = row["practice_code"]
        if code in EMIS_FIXED:
            system = "emis"
        elif code in SYSTMONE_FIXED:
            system = "systmone"
        else:
            system = "emis" if index % 2 else "systmone"
        practices.append(Practice(
            code=code,
            name=row["practice_name"],
            postcode=row["postcode"],
            pcn_code=pcn.get(code, ""),
            system=system,
            locality=postcode_locality.get(row["postcode"], ""),
        ))
    return Places(
        practices=tuple(practices),
        postcodes=tuple(sorted(p for p in postcode_lsoa if postcode_lsoa[p] in imd)),
        postcode_lsoa=postcode_lsoa,
        postcode_locality=postcode_locality,
        lsoa_imd_decile=imd,
    )
