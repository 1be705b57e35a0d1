"""The pipeline's own DuckDB warehouse: the raw zone and the audit tables.

Only the pipeline opens this file (read-write). Analysts get a published copy. Raw tables hold
pseudonymised rows in the current state of each source:

- EMIS: the latest full-refresh snapshot of each practice (an older export never replaces it);
- SystmOne: the latest version of every RowIdentifier, deletions kept as tombstones so that a
  late-arriving older extract cannot bring a deleted row back;
- ambulance: the latest version of every incident;
- VCSE: one row per service, session, activity and attendee; a corrected sheet replaces the rows
  it restates.

Every version decision compares extract dates (or, for VCSE, the time the sheet was received), so
loading the same files in any order gives the same warehouse.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

DDL = """
create schema if not exists audit;
create schema if not exists raw;
create sequence if not exists audit.file_id_sequence;

create table if not exists audit.file_loads (
    file_id bigint primary key,          -- one row per delivered file (a SystmOne folder or .zip is one file)
    source varchar not null,             -- emis, systmone, ambulance or vcse
    path varchar not null,               -- relative to landing/
    sha256 varchar not null,             -- of the file's bytes (of a folder: of its files' names and bytes)
    organisation_code varchar,           -- practice ODS code, trust ODS code, or VCSE service id
    extract_date date,                   -- from the file name (VCSE: the date received)
    received_at timestamp not null,      -- when the file arrived in landing/ (UTC)
    loaded_at timestamp,                 -- when its load committed (UTC)
    rows_received bigint not null,       -- data rows taken in (header, title, blank and totals rows excluded)
    rows_loaded bigint not null,         -- rows that passed their contract
    rows_rejected bigint not null,       -- rows quarantined in audit.rejected_rows
    status varchar not null,             -- loaded, rejected, held, duplicate or superseded
    message varchar                      -- what happened, in plain English; never an identifier
);

create table if not exists audit.rejected_rows (
    file_id bigint not null,             -- audit.file_loads.file_id
    path varchar not null,               -- the file (for a SystmOne delivery, the table inside it)
    row_number bigint not null,          -- the row as a person sees it in a spreadsheet
    field varchar not null,              -- the column at fault, or "row"
    reason varchar not null,             -- plain English: what is wrong and how to fix it
    value varchar                        -- the offending value, only when it is not an identifier
);

create table if not exists raw.emis_patients (
    practice_code varchar not null,
    emis_number varchar not null,
    extract_date date not null,
    file_id bigint not null,
    nhs_number_token varchar,
    name_dob_token varchar,
    surname_dob_postcode_token varchar,
    postcode_token varchar,
    lsoa21_code varchar,
    imd_decile tinyint,
    gender varchar,
    extract_age smallint,
    extract_age_band varchar,
    primary key (practice_code, emis_number)
);

create table if not exists raw.emis_events (
    practice_code varchar not null,
    emis_number varchar not null,
    extract_date date not null,
    file_id bigint not null,
    row_number bigint not null,
    event_date date not null,
    snomed_code varchar,
    code_term varchar,
    consultation_type varchar,
    appointment_status varchar,
    event_age smallint,
    event_age_band varchar
);

create table if not exists raw.systmone_patients (
    practice_code varchar not null,
    row_identifier varchar not null,
    extract_date date not null,
    file_id bigint not null,
    is_removed boolean not null,
    patient_id varchar,
    registered_practice_code varchar,
    nhs_number_token varchar,
    name_dob_token varchar,
    surname_dob_postcode_token varchar,
    postcode_token varchar,
    lsoa21_code varchar,
    imd_decile tinyint,
    gender varchar,
    extract_age smallint,
    extract_age_band varchar,
    primary key (practice_code, row_identifier)
);

create table if not exists raw.systmone_codes (
    practice_code varchar not null,
    row_identifier varchar not null,
    extract_date date not null,
    file_id bigint not null,
    is_removed boolean not null,
    patient_id varchar,
    event_date date,
    snomed_code varchar,
    ctv3_code varchar,
    ctv3_text varchar,
    organisation_code varchar,
    primary key (practice_code, row_identifier)
);

create table if not exists raw.systmone_appointments (
    practice_code varchar not null,
    row_identifier varchar not null,
    extract_date date not null,
    file_id bigint not null,
    is_removed boolean not null,
    patient_id varchar,
    appointment_start_at timestamp,      -- UTC
    status varchar,
    clinician_type varchar,
    organisation_code varchar,
    primary key (practice_code, row_identifier)
);

create table if not exists raw.ambulance_incidents (
    trust_code varchar not null,
    incident_id varchar not null,
    extract_date date not null,
    file_id bigint not null,
    call_received_at timestamp not null, -- UTC
    nhs_number_token varchar,
    name_dob_token varchar,
    surname_dob_postcode_token varchar,
    postcode_token varchar,
    lsoa21_code varchar,
    imd_decile tinyint,
    sex varchar,
    call_age smallint,
    call_age_band varchar,
    arp_category varchar not null,
    call_outcome varchar not null,
    conveyed_to varchar,
    is_communal_address boolean not null,
    trust_frequent_caller_flag boolean,
    primary key (trust_code, incident_id)
);

create table if not exists raw.vcse_attendances (
    service_id varchar not null,
    session_date date not null,
    activity_key varchar not null,       -- the activity, normalised
    attendee_key varchar not null,       -- keyed pseudonym of what the sheet says about the person
    received_at timestamp not null,
    file_id bigint not null,
    row_number bigint not null,
    activity varchar,
    attended boolean not null,
    is_linkable boolean not null,
    linkage_basis varchar,
    nhs_number_token varchar,
    name_dob_token varchar,
    surname_dob_postcode_token varchar,
    postcode_token varchar,
    lsoa21_code varchar,
    imd_decile tinyint,
    session_age smallint,
    session_age_band varchar,
    wellbeing_score tinyint,
    primary key (service_id, session_date, activity_key, attendee_key)
);
"""

RAW_TABLES = (
    "raw.emis_patients", "raw.emis_events", "raw.systmone_patients", "raw.systmone_codes",
    "raw.systmone_appointments", "raw.ambulance_incidents", "raw.vcse_attendances",
)


def connect(path: Path) -> duckdb.DuckDBPyConnection:
    """Open the pipeline's warehouse read-write, creating its schemas and tables if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = duckdb.connect(str(path))
    connection.execute(DDL)
    return connection
