"""What every feed contract shares: the result type, the parsers, the shared checks and the rule engine.

A feed's contract is one pandera ``DataFrameModel`` describing the TYPED rows that pass (see
``FeedRow`` and its subclasses). Each Field carries:

- ``title``: the column heading as the sending system writes it (what a person looks for);
- ``description``: what the column holds, phrased so that "Expected <description>" tells a
  service how to fix a rejected value;
- ``metadata["parse"]``: how the reader's text becomes the typed value (a ``Parse``; plain
  trimmed text when absent); ``metadata["identifier"]``: never echo the value in a rejection;
  ``metadata["derived"]``: computed here, not read from the file.

Every custom check's docstring is the reason a service reads when its row fails that check; it
may name ``{title}`` (the column's heading), ``{extract_date}`` and ``{practice_code}``.

How rows are judged: pandera's polars backend cannot parse text (no parsers; its coercion reads
only ISO dates), so an impossible date would look like a blank one; its failure cases carry the
value (identifiers included) and a position, not the spreadsheet row; and they grow with every
failing row. So ``validate_rows`` parses every column once with polars expressions, evaluates the
model's OWN pandera Checks (built-in and custom, through pandera's check backend) on the parsed
frame in one parallel pass, keeps the first rule each field breaks (blank, unreadable, then the
Field's checks in order, then the frame checks), and finally runs the model itself on the valid
rows: the contract they must always meet. One source for every rule and its words; timings are
in ``schemas.emis.validate_emis``.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

import pandera.backends.polars.builtin_checks  # noqa: F401 (before any model: see below)
import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData
from pandera.backends.polars.checks import PolarsCheckBackend
from pandera.backends.polars.register import register_polars_backends

# pandera binds each built-in check (str_matches, in_range ...) to its dispatcher when a model is defined, and
# registers the Polars implementations only when pandera.backends.polars.builtin_checks is imported. Imported
# above, before any model, the models' checks always have them: otherwise a process that defines the models
# first (`sprx portal`) fails every check with KeyError: PolarsData.

from flows.sources.common import PARSE_ERROR, ROW_NUMBER

# Field name used in a rejection for a row the reader could not split into columns.
ROW_FIELD = "row"
# No real date in any feed is earlier than this.
EARLIEST_DATE = date(1900, 1, 1)
# Date and date-time columns of the models, all checked against EARLIEST_DATE ...
DATE_COLUMNS = ("date_of_birth", "event_date", "session_date", "call_received", "appointment_start")
# ... and all but SystmOne's DateStart against the extract date (a Booked appointment lies ahead).
PAST_DATE_COLUMNS = ("date_of_birth", "event_date", "session_date", "call_received")

NHS_NUMBER_PATTERN = r"^[0-9]{10}$"
POSTCODE_PATTERN = r"^[A-Z]{1,2}[0-9][0-9A-Z]? [0-9][A-Z]{2}$"
PRACTICE_CODE_PATTERN = r"^[A-Z][0-9]{5}$"
DIGITS_PATTERN = r"^[0-9]+$"
SNOMED_CODE_PATTERN = r"^[0-9]{6,18}$"

# Shapes of a personal identifier typed where it does not belong (free text that is stored, a wrong column):
# an NHS number (10 digits, spaced 3-3-4 or not), a UK postcode (any case and spacing), a date (as a date of
# birth is written). A value with one of these shapes is never echoed in a rejection.
IDENTIFIER_SHAPES = {
    "an NHS number": r"(^|[^0-9])[0-9]{3}[ -]?[0-9]{3}[ -]?[0-9]{4}([^0-9]|$)",
    "a postcode": r"(?i)(^|[^a-z0-9])[a-z]{1,2}[0-9][a-z0-9]? ?[0-9][a-z]{2}([^a-z0-9]|$)",
    "a date of birth": r"(?i)(^|[^0-9])([0-9]{1,2}[/.-][0-9]{1,2}[/.-][0-9]{2,4}|[0-9]{4}[/.-][0-9]{1,2}[/.-][0-9]{1,2}"
                       r"|[0-9]{1,2}[ -]?(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*[ -]?[0-9]{2,4})"
                       r"([^0-9]|$)",
}
# The shapes a value in a date column may have without being taken for an identifier.
DATE_SHAPE = "a date of birth"

REJECTED_SCHEMA = pl.Schema({ROW_NUMBER: pl.Int64, "field": pl.String, "reason": pl.String, "value": pl.String})

# Plain-English problem for each pandera built-in check; the reason goes on "Expected <description>".
BUILTIN_PROBLEMS = {
    "isin": "is not one of the allowed values",
    "str_matches": "is not in the expected format",
    "greater_than_or_equal_to": "is out of range",
    "less_than_or_equal_to": "is out of range",
    "greater_than": "is out of range",
    "less_than": "is out of range",
    "in_range": "is out of range",
}
MISSING_PROBLEM = "is blank but required"
# Name of the check comparing a GP row's practice code with the file name's.
PRACTICE_CHECK = "practice_matches_file_name"


@dataclass(frozen=True)
class Validated:
    """One frame split into the rows that passed (typed, normalised) and why the others failed.

    ``valid``: the feed model's columns, typed; ``row_number`` kept, ``_parse_error`` dropped.
    ``rejected``: ``row_number``, ``field`` (a column, or ``"row"``), ``reason``, ``value`` (null
    for identifiers); one line per failing field, so a row may appear more than once.
    ``wrong_practice_rows``: rows whose practice code is present but not the one in the file name
    (GP feeds; 0 when no practice code was given). Each is also in ``rejected`` (field
    ``organisation_code``). When it equals the number of rows read, the file belongs to another
    practice: the load layer rejects the whole file.
    """

    valid: pl.DataFrame
    rejected: pl.DataFrame
    wrong_practice_rows: int = 0


@dataclass(frozen=True)
class ValidationContext:
    """What the rules need to know about the file: its extract date and, for GP files, its practice."""

    extract_date: date
    practice_code: str | None = None


_CONTEXT: ContextVar[ValidationContext | None] = ContextVar("sprx_validation_context", default=None)


@contextlib.contextmanager
def validation_context(context: ValidationContext) -> Iterator[ValidationContext]:
    """Run the models' checks against one file's extract date and practice code."""
    token = _CONTEXT.set(context)
    try:
        yield context
    finally:
        _CONTEXT.reset(token)


def current_context() -> ValidationContext:
    """The file being validated; outside validate_*, today's date and no practice code."""
    return _CONTEXT.get() or ValidationContext(extract_date=date.today())


def one_of(values: Sequence[str]) -> str:
    """List allowed values for a description: 'A, B or C'."""
    quoted = [f"'{value}'" for value in values]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


# ---------------------------------------------------------------------------------------------
# Parsers: from the reader's text (trimmed, blank as null) to the typed value.


@dataclass(frozen=True)
class Parse:
    """How a column's text becomes its typed value; null where the text cannot be read.

    ``problem`` completes "<heading> ..." when non-blank text gives null (None: never fails).
    """

    convert: Callable[[pl.Expr, ValidationContext], pl.Expr]
    problem: str | None = None


def trimmed(column: str) -> pl.Expr:
    """The reader's text with surrounding whitespace removed; empty text as null."""
    text = pl.col(column).str.strip_chars()
    return pl.when(text.str.len_bytes() > 0).then(text)


def normalise_nhs_number(text: pl.Expr) -> pl.Expr:
    """Remove the spaces and hyphens people type inside an NHS number ('999 291 4173', '999-291-4173')."""
    return text.str.replace_all(" ", "", literal=True).str.replace_all("-", "", literal=True)


def normalise_postcode(text: pl.Expr) -> pl.Expr:
    """Upper-case, spaces removed, then one space before the last three characters ('wa14  4nq' -> 'WA14 4NQ')."""
    packed = text.str.to_uppercase().str.replace_all(" ", "", literal=True)
    return pl.concat_str(packed.str.head(-3), pl.lit(" "), packed.str.tail(3))


def nhs_number_check_digit_passes(number: pl.Expr) -> pl.Expr:
    """NHS Modulus 11: digits 1-9 weighted 10..2; check = 11 - sum mod 11 (11 -> 0, 10 -> never valid).

    True or False for a 10-digit string, null for anything else (its format is a separate rule).
    Digits come from integer arithmetic on two 5-digit halves, far faster than slicing strings.
    """
    value = number.cast(pl.Int64, strict=False)
    halves = ((value // 100_000).cast(pl.Int32), (value % 100_000).cast(pl.Int32))
    digits = [(half // 10 ** (4 - place)) % 10 for half in halves for place in range(5)]
    total = pl.sum_horizontal(digit * (10 - position) for position, digit in enumerate(digits[:9]))
    # (11 - total mod 11) mod 11 turns a check of 11 into 0 and leaves 10, which no digit equals.
    return pl.when(number.str.contains(NHS_NUMBER_PATTERN)).then((11 - total % 11) % 11 == digits[9])


_DIRECTIVES = {
    "%d": r"[0-9]{1,2}",
    "%m": r"[0-9]{1,2}",
    "%Y": r"[0-9]{4}",
    "%y": r"[0-9]{2}",
    "%b": r"[A-Za-z]{3}",
    "%H": r"[0-9]{1,2}",
    "%M": r"[0-9]{2}",
    "%S": r"[0-9]{2}",
}


def format_shape(strftime_format: str) -> str:
    """A regular expression for text written in a strftime format: '%d-%b-%Y' -> digits-letters-4 digits."""
    parts = re.split(r"(%[a-zA-Z])", strftime_format)
    return "^" + "".join(_DIRECTIVES[part] if part in _DIRECTIVES else re.escape(part) for part in parts) + "$"


def _century(text: pl.Expr, strftime_format: str, century: str) -> tuple[pl.Expr, str]:
    """Rewrite a trailing two-digit year as four digits with the given century ('17/6/26' -> '17/6/2026')."""
    if not strftime_format.endswith("%y"):
        raise ValueError(f"a two-digit year must end the format: {strftime_format!r}")
    return text.str.replace(r"([0-9]{2})$", f"{century}$1"), strftime_format[:-2] + "%Y"


def _parse_formats(text: pl.Expr, formats: Sequence[str], dtype: pl.DataType, century: str) -> pl.Expr:
    """The first format whose shape the text has, parsed (null when the date does not exist)."""
    parsed = []
    for strftime_format in formats:
        source, full_format = text, strftime_format
        if "%y" in strftime_format:
            source, full_format = _century(text, strftime_format, century)
        parsed.append(
            pl.when(text.str.contains(format_shape(strftime_format))).then(
                source.str.strptime(dtype, full_format, strict=False)
            )
        )
    return pl.coalesce(parsed) if len(parsed) > 1 else parsed[0]


def date_parse(*formats: str, two_digit_year: Literal["20yy", "latest"] = "20yy") -> Parse:
    """Dates in the given strftime formats.

    A '%y' year is 20yy, or with two_digit_year='latest' the latest such year not after the extract
    date (for dates of birth: '56' is 1956, '20' is 2020).
    """

    def convert(text: pl.Expr, context: ValidationContext) -> pl.Expr:
        recent = _parse_formats(text, formats, pl.Date(), "20")
        if two_digit_year == "20yy":
            return recent
        older = _parse_formats(text, formats, pl.Date(), "19")
        return pl.when(recent <= context.extract_date).then(recent).otherwise(older)

    return Parse(convert, "is not a real date")


def datetime_parse(*formats: str) -> Parse:
    """Local date-times (no time zone) in the given strftime formats."""
    return Parse(lambda text, _: _parse_formats(text, formats, pl.Datetime("us"), "20"), "is not a real date and time")


def answer_parse(yes: Sequence[str], no: Sequence[str]) -> Parse:
    """True for a yes token, False for a no token, compared without regard to case."""
    mapping = {token.casefold(): True for token in yes} | {token.casefold(): False for token in no}
    return Parse(
        lambda text, _: text.str.to_lowercase().replace_strict(mapping, default=None, return_dtype=pl.Boolean),
        "is not a recognised answer",
    )


def whole_number_parse() -> Parse:
    """A whole number such as '7' (the range is a separate rule)."""
    return Parse(lambda text, _: text.cast(pl.Int64, strict=False), "is not a whole number")


TEXT = Parse(lambda text, _: text)
NHS_NUMBER = Parse(lambda text, _: normalise_nhs_number(text))
POSTCODE = Parse(lambda text, _: normalise_postcode(text))


# ---------------------------------------------------------------------------------------------
# The base model: row_number and the checks every feed shares.


def _names_regex(names: Sequence[str]) -> str:
    """A regular expression matching exactly these column names (for checks shared through FeedRow)."""
    return "^(" + "|".join(map(re.escape, names)) + ")$"


class FeedRow(pa.DataFrameModel):
    """A validated feed row: the row a person sees in the file, and the checks all feeds share."""

    row_number: pl.Int64 = pa.Field(
        ge=1,
        title="row",
        description="the row number as a spreadsheet shows it (title and header rows counted)",
        metadata={"derived": True},
    )

    class Config:
        """Exactly the model's columns, cast to the model's types."""

        strict = True
        coerce = True

    @pa.check("^nhs_number$", regex=True, name="nhs_number_check_digit")
    def nhs_number_check_digit(cls, data: PolarsData) -> pl.LazyFrame:
        """{title} fails the Modulus 11 check digit: check it was copied correctly."""
        return data.lazyframe.select(nhs_number_check_digit_passes(pl.col(data.key)))

    @pa.check(_names_regex(DATE_COLUMNS), regex=True, name="not_before_1900")
    def not_before_1900(cls, data: PolarsData) -> pl.LazyFrame:
        """{title} is before 1900: check the year."""
        return data.lazyframe.select(pl.col(data.key).cast(pl.Date) >= EARLIEST_DATE)

    @pa.check(_names_regex(PAST_DATE_COLUMNS), regex=True, name="not_after_extract_date")
    def not_after_extract_date(cls, data: PolarsData) -> pl.LazyFrame:
        """{title} is after the file's extract date ({extract_date}): check the day, month and year."""
        return data.lazyframe.select(pl.col(data.key).cast(pl.Date) <= current_context().extract_date)

    @pa.check("^organisation_code$", regex=True, name=PRACTICE_CHECK)
    def practice_matches_file_name(cls, data: PolarsData) -> pl.LazyFrame:
        """{title} is not the practice named in the file name ({practice_code}): each file holds one practice's rows."""
        practice_code = current_context().practice_code
        if practice_code is None:
            return data.lazyframe.select(pl.col(data.key).is_null() | True)
        return data.lazyframe.select(pl.col(data.key) == practice_code)


# ---------------------------------------------------------------------------------------------
# The engine: parse once, evaluate every Check of the model in one pass, keep the first failure.


@dataclass(frozen=True)
class _Column:
    """What the engine needs to know about one model column."""

    name: str
    dtype: pl.DataType
    title: str
    description: str
    nullable: bool
    parse: Parse
    identifier: bool
    derived: bool
    checks: tuple[pa.Check, ...]


@dataclass(frozen=True)
class _Plan:
    """A model's columns and frame-level checks, read once from its pandera schema."""

    columns: tuple[_Column, ...]
    frame_checks: tuple[pa.Check, ...]

    def column(self, name: str) -> _Column:
        """The column of that name."""
        return next(column for column in self.columns if column.name == name)


@functools.cache
def _plan(model: type[FeedRow]) -> _Plan:
    """Read a model's pandera schema into the engine's plan."""
    register_polars_backends()
    schema = model.to_schema()
    columns = []
    for name, column in schema.columns.items():
        metadata = column.metadata or {}
        if not column.description or not column.title:
            raise TypeError(f"{model.__name__}.{name} needs a title and a description: they are the rejection text")
        for check in column.checks:
            if check.name not in BUILTIN_PROBLEMS and not check.description:
                raise TypeError(f"{model.__name__}: check {check.name} on {name} needs a docstring")
        columns.append(
            _Column(
                name=name,
                dtype=column.dtype.type,
                title=column.title,
                description=column.description.rstrip("."),
                nullable=column.nullable,
                parse=metadata.get("parse", TEXT),
                identifier=bool(metadata.get("identifier")),
                derived=bool(metadata.get("derived")),
                checks=tuple(column.checks),
            )
        )
    for check in schema.checks:
        if not check.description:
            raise TypeError(f"{model.__name__}: check {check.name} needs a docstring")
    return _Plan(columns=tuple(columns), frame_checks=tuple(schema.checks))


def _raw(name: str) -> str:
    """The engine's private name for a column's text as read."""
    return f"__raw__{name}"


@dataclass(frozen=True)
class _Rule:
    """One way a field can fail: its failure mask, its reason template and the check's name."""

    field: str
    failed: pl.Expr
    template: str
    name: str


def _rules(plan: _Plan, parsed: pl.DataFrame) -> tuple[list[_Rule], pl.DataFrame]:
    """Every rule of the model as a failure mask over the parsed frame; the checks run in one parallel pass."""
    lazy = parsed.lazy()
    outputs: list[pl.LazyFrame] = []
    rules: list[_Rule] = []
    expected = "Expected {description}."
    for column in plan.columns:
        if column.derived:
            continue
        raw = pl.col(_raw(column.name))
        if not column.nullable:
            rules.append(_Rule(column.name, raw.is_null(), f"{{title}} {MISSING_PROBLEM}. {expected}", "required"))
        if column.parse.problem is not None:
            unreadable = raw.is_not_null() & pl.col(column.name).is_null()
            rules.append(_Rule(column.name, unreadable, f"{{title}} {column.parse.problem}. {expected}", "readable"))
        for check in column.checks:
            output = PolarsCheckBackend(check).apply(PolarsData(lazy, column.name))
            template = (
                f"{{title}} {BUILTIN_PROBLEMS[check.name]}. {expected}"
                if check.name in BUILTIN_PROBLEMS
                else check.description
            )
            rules.append(_check_rule(column.name, template, check, len(outputs)))
            outputs.append(output.select(pl.all().alias(_output(len(outputs)))))
    derived = {column.name for column in plan.columns if column.derived}
    fields = {column.name for column in plan.columns} - derived
    for check in plan.frame_checks:
        output = PolarsCheckBackend(check).check_fn(PolarsData(lazy, "*"))
        for blamed in output.collect_schema().names():
            if blamed in derived:
                continue  # a column computed here: the contract run on the valid rows covers it
            if blamed not in fields:
                raise TypeError(f"frame check {check.name} must name each output column after the field it blames")
            rules.append(_check_rule(blamed, check.description, check, len(outputs)))
            outputs.append(output.select(pl.col(blamed).alias(_output(len(outputs)))))
    results = pl.concat(pl.collect_all(outputs), how="horizontal") if outputs else pl.DataFrame()
    return rules, results


def _output(position: int) -> str:
    """The engine's private name for one check's output column."""
    return f"__check__{position}"


def _check_rule(field_name: str, template: str, check: pa.Check, position: int) -> _Rule:
    """A check's output as a failure mask: null counts as a pass when the check ignores nulls."""
    passed = pl.col(_output(position)).fill_null(check.ignore_na)
    return _Rule(field_name, ~passed, template, check.name)


def _reason(template: str, column: _Column, context: ValidationContext) -> str:
    """Fill a reason template with the column's heading and description and the file's context."""
    return template.format(
        title=column.title,
        description=column.description,
        extract_date=context.extract_date.isoformat(),
        practice_code=context.practice_code or "",
    )


def validate_rows(
    model: type[FeedRow],
    frame: pl.DataFrame,
    *,
    reader_schema: pl.Schema,
    extract_date: date,
    practice_code: str | None = None,
    derive: Callable[[], dict[str, pl.Expr]] | None = None,
    check_contract: bool = True,
) -> Validated:
    """Split a reader's frame into typed valid rows and one rejection per failing field.

    ``reader_schema``: the reader's SCHEMA; the frame must have its columns. ``derive``: columns
    computed from the parsed ones (VCSE linkage). ``check_contract``: also run the pandera model
    on the valid rows, which must always pass (a failure there is a bug here, not bad data).
    """
    missing = [name for name in reader_schema.names() if name not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks the reader's columns {missing}; expected the reader's SCHEMA")
    if isinstance(extract_date, datetime) or not isinstance(extract_date, date):
        raise TypeError("extract_date must be a datetime.date")
    plan = _plan(model)
    context = ValidationContext(extract_date=extract_date, practice_code=practice_code)
    source = [column for column in plan.columns if not column.derived]
    with validation_context(context):
        parsed = (
            frame.lazy()
            .select(
                pl.col(ROW_NUMBER),
                pl.col(PARSE_ERROR),
                *(trimmed(column.name).alias(_raw(column.name)) for column in source),
            )
            .with_columns(
                column.parse.convert(pl.col(_raw(column.name)), context).alias(column.name) for column in source
            )
        )
        if derive is not None:
            parsed = parsed.with_columns(**derive())
        parsed = parsed.collect()
        rules, results = _rules(plan, parsed)
    work = pl.concat([parsed, results], how="horizontal").lazy() if results.width else parsed.lazy()

    # Per field, the index of the first rule it breaks (null when it passes). A row the reader
    # could not split is reported once, as a whole, and not field by field.
    by_field: dict[str, list[int]] = {}
    for index, rule in enumerate(rules):
        by_field.setdefault(rule.field, []).append(index)
    unsplit = pl.col(PARSE_ERROR).is_not_null()
    firsts = []
    for name, indexes in by_field.items():
        chain = pl.when(unsplit).then(pl.lit(None, pl.UInt16))
        for index in indexes:
            chain = chain.when(rules[index].failed).then(pl.lit(index, pl.UInt16))
        firsts.append(chain.otherwise(None).alias(_first(name)))
    failed = pl.any_horizontal(unsplit, *(pl.col(_first(name)).is_not_null() for name in by_field))
    practice = [rule.failed for rule in rules if rule.name == PRACTICE_CHECK]
    wrong_practice = pl.any_horizontal(practice) & ~unsplit if practice else pl.lit(False)
    work = (
        work.with_columns(firsts)
        .with_columns(failed.alias("__failed"), wrong_practice.alias("__wrong_practice"))
        .collect()
    )
    valid = work.filter(~pl.col("__failed")).select(pl.col(column.name).cast(column.dtype) for column in plan.columns)
    failing = work.filter(pl.col("__failed"))
    rejected = _rejections(plan, failing, list(by_field), rules, context)
    wrong_practice_rows = int(failing["__wrong_practice"].sum()) if practice_code is not None else 0
    if check_contract:
        with validation_context(context):
            valid = model.validate(valid, lazy=True)
    return Validated(valid=valid, rejected=rejected, wrong_practice_rows=wrong_practice_rows)


def _first(name: str) -> str:
    """The engine's private name for the index of the first rule a field breaks."""
    return f"__first__{name}"


def _rejections(
    plan: _Plan, failing: pl.DataFrame, names: list[str], rules: list[_Rule], context: ValidationContext
) -> pl.DataFrame:
    """One line per failing field of the failing rows (one per unreadable row), in file then column order."""
    unsplit = failing.filter(pl.col(PARSE_ERROR).is_not_null()).select(
        pl.col(ROW_NUMBER),
        pl.lit(ROW_FIELD).alias("field"),
        pl.col(PARSE_ERROR).alias("reason"),
        pl.lit(None, pl.String).alias("value"),
        pl.lit(-1, pl.Int32).alias("__order"),
    )
    if not names:
        return unsplit.drop("__order").cast(dict(REJECTED_SCHEMA))
    per_field = failing.select(
        pl.col(ROW_NUMBER),
        *(
            pl.struct(pl.col(_first(name)).alias("rule"), _echo(plan.column(name)).alias("value")).alias(name)
            for name in names
        ),
    ).unpivot(index=ROW_NUMBER, variable_name="field", value_name="failure")
    per_field = per_field.select(
        ROW_NUMBER,
        "field",
        pl.col("failure").struct.field("rule"),
        pl.col("failure").struct.field("value"),
    ).filter(pl.col("rule").is_not_null())
    reasons = pl.DataFrame(
        {
            "rule": pl.Series(range(len(rules)), dtype=pl.UInt16),
            "reason": [_reason(rule.template, plan.column(rule.field), context) for rule in rules],
        }
    )
    columns = [column.name for column in plan.columns]
    order = pl.DataFrame({"field": columns, "__order": pl.Series(range(len(columns)), dtype=pl.Int32)})
    per_field = per_field.join(reasons, on="rule", how="left").join(order, on="field", how="left")
    combined = pl.concat([unsplit, per_field.select(ROW_NUMBER, "field", "reason", "value", "__order")])
    return combined.sort(ROW_NUMBER, "__order").drop("__order").cast(dict(REJECTED_SCHEMA))


def identifier_shaped(text: pl.Expr, shapes: Sequence[str] = tuple(IDENTIFIER_SHAPES)) -> pl.Expr:
    """True where text holds something shaped like an identifier (IDENTIFIER_SHAPES); null stays null."""
    return pl.any_horizontal(text.str.contains(IDENTIFIER_SHAPES[shape]) for shape in shapes)


def _echo(column: _Column) -> pl.Expr:
    """The value as read (trimmed), for a rejection; never an identifier's or free text's, and never a value
    shaped like an identifier (an NHS number typed into Wellbeing) whatever its column."""
    if column.identifier:
        return pl.lit(None, pl.String)
    raw = pl.col(_raw(column.name))
    dated = column.dtype in (pl.Date, pl.Datetime) or isinstance(column.dtype, (pl.Date, pl.Datetime))
    shapes = [shape for shape in IDENTIFIER_SHAPES if not (dated and shape == DATE_SHAPE)]
    return pl.when(identifier_shaped(raw, shapes).fill_null(False)).then(pl.lit(None, pl.String)).otherwise(raw)
