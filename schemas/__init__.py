"""Data contracts: one pandera model per feed shape, and one validate_<shape> entry point each.

Each entry point takes a reader's frame (String columns, ``row_number``, ``_parse_error``) and the
file's extract date, and returns ``Validated``: the typed, normalised rows that passed and one
rejection per failing field (see ``schemas.engine``).
"""

from schemas.ambulance import AmbulanceIncident, validate_ambulance_incident
from schemas.base import FeedRow
from schemas.emis import EmisRow, validate_emis
from schemas.results import Validated
from schemas.systmone import (
    SystmOneAppointment,
    SystmOneCode,
    SystmOnePatient,
    validate_systmone_appointment,
    validate_systmone_code,
    validate_systmone_patient,
)
from schemas.vcse import VcseAttendance, validate_vcse_attendance

__all__ = [
    "AmbulanceIncident",
    "EmisRow",
    "FeedRow",
    "SystmOneAppointment",
    "SystmOneCode",
    "SystmOnePatient",
    "Validated",
    "VcseAttendance",
    "validate_ambulance_incident",
    "validate_emis",
    "validate_systmone_appointment",
    "validate_systmone_code",
    "validate_systmone_patient",
    "validate_vcse_attendance",
]
