"""The contract engine: parse once, evaluate every Check of a model in one pass, keep each field's first failure.

Why not plain ``model.validate``: pandera's polars backend cannot parse text (no parsers; its
coercion reads only ISO dates), so an impossible date would look like a blank one; its failure
cases carry the value (identifiers included) and a position, not the spreadsheet row; and they
grow with every failing row. So ``validate_rows`` parses every column once with polars expressions
(``schemas.parsing``), evaluates the model's OWN pandera Checks (built-in and custom, through
pandera's check backend) on the parsed frame in one parallel pass, keeps the first rule each field
breaks (blank, unreadable, then the Field's checks in order, then the frame checks), and finally
makes sure the valid rows meet the whole model, the contract they must always meet (``_meet_contract``:
what the rules did not already cover, in one pass; pandera's ``model.validate`` whenever anything there
fails). One source for every rule and its words; timings are in ``schemas.emis.validate_emis``.
``validate_files`` does the same for several files' frames in one pass (a batch of small SystmOne deltas:
the cost is per pass, not per row), each row judged against its own file's extract date and practice.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData
from pandera.backends.polars.checks import PolarsCheckBackend
from pandera.backends.polars.register import register_polars_backends

from schemas.base import PRACTICE_CHECK, FeedRow
from schemas.context import (EXTRACT_DATE_COLUMN, PRACTICE_CODE_COLUMN, ValidationContext, per_row_context,
                             validation_context)
from schemas.identifiers import DATE_SHAPE, IDENTIFIER_SHAPES, identifier_shaped
from schemas.parsing import TEXT, Parse, trimmed
from schemas.results import REJECTED_SCHEMA, ROW_FIELD, Validated
from sprx.readers.frames import PARSE_ERROR, ROW_NUMBER

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
# The engine's column naming the file a row came from (the index of its frame in `validate_files`).
_FILE = "__file"


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
    context = ValidationContext(extract_date=extract_date, practice_code=practice_code)
    return validate_files(model, [(frame, context)], reader_schema=reader_schema, derive=derive,
                          check_contract=check_contract)[0]


def validate_files(
    model: type[FeedRow],
    files: Sequence[tuple[pl.DataFrame, ValidationContext]],
    *,
    reader_schema: pl.Schema,
    derive: Callable[[], dict[str, pl.Expr]] | None = None,
    check_contract: bool = True,
) -> list[Validated]:
    """``validate_rows`` for several files' frames (each with its own extract date and practice) in one pass:
    one Validated per frame, in order, each what ``validate_rows`` gives for that frame alone.

    The engine's cost is per pass, not per row (about 10 ms for a frame of a few hundred rows): a batch of
    SystmOne deltas is validated a table at a time, not a file at a time. Each row carries its file's
    context in the columns ``schemas.context`` names, where the checks and parsers read it, and a rejection's
    reason is filled with its own file's extract date and practice."""
    if not files:
        return []
    for frame, context in files:
        missing = [name for name in reader_schema.names() if name not in frame.columns]
        if missing:
            raise ValueError(f"the frame lacks the reader's columns {missing}; expected the reader's SCHEMA")
        if isinstance(context.extract_date, datetime) or not isinstance(context.extract_date, date):
            raise TypeError("extract_date must be a datetime.date")
    plan = _plan(model)
    source = [column for column in plan.columns if not column.derived]
    contexts = [context for _, context in files]
    per_row = len(files) > 1

    def scope() -> contextlib.AbstractContextManager:
        """Where the checks read the file's context: each row's own columns, or the one file's."""
        return per_row_context() if per_row else validation_context(contexts[0])

    if per_row:
        frame = pl.concat([
            part.lazy().select(
                pl.col(ROW_NUMBER), pl.col(PARSE_ERROR), *(pl.col(column.name) for column in source),
                pl.lit(index, pl.UInt32).alias(_FILE),
                pl.lit(context.extract_date, pl.Date).alias(EXTRACT_DATE_COLUMN),
                pl.lit(context.practice_code, pl.String).alias(PRACTICE_CODE_COLUMN),
            )
            for index, (part, context) in enumerate(files)
        ]).collect()
        carried = [_FILE, EXTRACT_DATE_COLUMN, PRACTICE_CODE_COLUMN]
    else:
        frame = files[0][0].with_columns(pl.lit(0, pl.UInt32).alias(_FILE))
        carried = [_FILE]
    with scope():
        parsed = (
            frame.lazy()
            .select(
                pl.col(ROW_NUMBER),
                pl.col(PARSE_ERROR),
                *carried,
                *(trimmed(column.name).alias(_raw(column.name)) for column in source),
            )
            .with_columns(column.parse.convert(pl.col(_raw(column.name))).alias(column.name) for column in source)
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
    valid = work.filter(~pl.col("__failed")).select(
        *(pl.col(column.name).cast(column.dtype) for column in plan.columns), *carried)
    failing = work.filter(pl.col("__failed"))
    rejected = (_rejections(plan, failing, list(by_field), rules, contexts) if failing.height
                else pl.DataFrame(schema=REJECTED_SCHEMA | {_FILE: pl.UInt32}))
    wrong_practice_rows = dict(failing.group_by(_FILE).agg(pl.col("__wrong_practice").sum()).iter_rows())
    if check_contract:
        with scope():
            valid = _meet_contract(model, plan, valid, contexts)
    columns = [column.name for column in plan.columns]
    valid_by_file = _split(valid, len(files))
    rejected_by_file = _split(rejected, len(files))
    return [
        Validated(
            valid=valid_by_file[index].select(columns),
            rejected=rejected_by_file[index].drop(_FILE),
            wrong_practice_rows=int(wrong_practice_rows.get(index, 0)) if context.practice_code is not None else 0,
        )
        for index, context in enumerate(contexts)
    ]


def _split(frame: pl.DataFrame, count: int) -> list[pl.DataFrame]:
    """A frame's rows by the file they came from (the _FILE column), in order; an empty frame for a file
    with none."""
    if count == 1:
        return [frame]
    parts = frame.partition_by(_FILE, as_dict=True, maintain_order=True)
    empty = frame.clear()
    return [parts.get((index,), empty) for index in range(count)]


def _meet_contract(model: type[FeedRow], plan: _Plan, valid: pl.DataFrame,
                   contexts: Sequence[ValidationContext]) -> pl.DataFrame:
    """The valid rows, once they are known to meet the whole model; pandera's own error when they do not.

    Every rule of a column read from the file was already evaluated on these rows (``_rules``: the model's own
    checks), and a row breaking one is not among them. What is left of the model is checked here in one pass:
    its columns and types (strict, coerced), the non-nullable columns, and the checks of the derived columns
    (frame checks included). Running ``model.validate`` on every frame would evaluate every check again, one
    polars collect each: most of the time an ingest of many small files spent. Should anything fail here (a bug
    in this engine, never bad data), the model itself runs on each file's rows with that file's context, so the
    error is pandera's, with its failure cases. ``valid`` carries the engine's _FILE column (and the files'
    context columns when there are several), which the model does not have."""
    expected = [(column.name, column.dtype) for column in plan.columns]
    model_columns = [column.name for column in plan.columns]
    if [(name, dtype) for name, dtype in valid.select(model_columns).schema.items()] != expected:
        return _validate_by_file(model, valid, contexts)
    lazy = valid.lazy()
    outputs = [lazy.select(pl.any_horizontal(
        [pl.col(column.name).is_null().any() for column in plan.columns if not column.nullable] or [pl.lit(False)]
    ).alias("__broken"))]
    for column in plan.columns:
        if column.derived:
            for check in column.checks:
                output = PolarsCheckBackend(check).apply(PolarsData(lazy, column.name))
                outputs.append(output.select((~pl.all().fill_null(check.ignore_na)).any().alias("__broken")))
    derived = {column.name for column in plan.columns if column.derived}
    for check in plan.frame_checks:
        output = PolarsCheckBackend(check).check_fn(PolarsData(lazy, "*"))
        blamed = [name for name in output.collect_schema().names() if name in derived]
        if blamed:
            outputs.append(output.select(
                pl.any_horizontal((~pl.col(name).fill_null(check.ignore_na)).any() for name in blamed)
                .alias("__broken")))
    if any(frame.item() for frame in pl.collect_all(outputs)):
        return _validate_by_file(model, valid, contexts)
    return valid


def _validate_by_file(model: type[FeedRow], valid: pl.DataFrame, contexts: Sequence[ValidationContext]
                      ) -> pl.DataFrame:
    """pandera's ``model.validate`` on each file's valid rows, with that file's context (raises its errors)."""
    model_columns = [name for name in valid.columns if not name.startswith("__")]
    parts = []
    for index, part in enumerate(_split(valid, len(contexts))):
        with validation_context(contexts[index]):
            checked = model.validate(part.select(model_columns), lazy=True)
        parts.append(checked.with_columns(pl.lit(index, pl.UInt32).alias(_FILE)))
    return pl.concat(parts, how="diagonal_relaxed")


def _first(name: str) -> str:
    """The engine's private name for the index of the first rule a field breaks."""
    return f"__first__{name}"


def _rejections(
    plan: _Plan, failing: pl.DataFrame, names: list[str], rules: list[_Rule], contexts: Sequence[ValidationContext]
) -> pl.DataFrame:
    """One line per failing field of the failing rows (one per unreadable row), in file, row then column order,
    with the file (_FILE) each came from; a reason names its own file's extract date and practice."""
    unsplit = failing.filter(pl.col(PARSE_ERROR).is_not_null()).select(
        pl.col(_FILE),
        pl.col(ROW_NUMBER),
        pl.lit(ROW_FIELD).alias("field"),
        pl.col(PARSE_ERROR).alias("reason"),
        pl.lit(None, pl.String).alias("value"),
        pl.lit(-1, pl.Int32).alias("__order"),
    )
    schema = dict(REJECTED_SCHEMA) | {_FILE: pl.UInt32}
    if not names:
        return unsplit.drop("__order").cast(schema)
    per_field = failing.select(
        pl.col(_FILE),
        pl.col(ROW_NUMBER),
        *(
            pl.struct(pl.col(_first(name)).alias("rule"), _echo(plan.column(name)).alias("value")).alias(name)
            for name in names
        ),
    ).unpivot(index=[_FILE, ROW_NUMBER], variable_name="field", value_name="failure")
    per_field = per_field.select(
        _FILE,
        ROW_NUMBER,
        "field",
        pl.col("failure").struct.field("rule"),
        pl.col("failure").struct.field("value"),
    ).filter(pl.col("rule").is_not_null())
    # a reason per rule broken in each file (filled with that file's context), not per rule and file
    broken = per_field.select(_FILE, "rule").unique().rows()
    reasons = pl.DataFrame(
        {
            _FILE: pl.Series([file for file, _ in broken], dtype=pl.UInt32),
            "rule": pl.Series([rule for _, rule in broken], dtype=pl.UInt16),
            "reason": [_reason(rules[rule].template, plan.column(rules[rule].field), contexts[file])
                       for file, rule in broken],
        }
    )
    columns = [column.name for column in plan.columns]
    order = pl.DataFrame({"field": columns, "__order": pl.Series(range(len(columns)), dtype=pl.Int32)})
    per_field = per_field.join(reasons, on=[_FILE, "rule"], how="left").join(order, on="field", how="left")
    combined = pl.concat([unsplit, per_field.select(_FILE, ROW_NUMBER, "field", "reason", "value", "__order")])
    return combined.sort(_FILE, ROW_NUMBER, "__order").drop("__order").select(*REJECTED_SCHEMA.names(), _FILE
                                                                            ).cast(schema)


def _echo(column: _Column) -> pl.Expr:
    """The value as read (trimmed), for a rejection; never an identifier's or free text's, and never a value
    shaped like an identifier (an NHS number typed into Wellbeing) whatever its column."""
    if column.identifier:
        return pl.lit(None, pl.String)
    raw = pl.col(_raw(column.name))
    dated = column.dtype in (pl.Date, pl.Datetime) or isinstance(column.dtype, (pl.Date, pl.Datetime))
    shapes = [shape for shape in IDENTIFIER_SHAPES if not (dated and shape == DATE_SHAPE)]
    return pl.when(identifier_shaped(raw, shapes).fill_null(False)).then(pl.lit(None, pl.String)).otherwise(raw)
