"""Statistics shared by the warehouse's estimation models (dbt Python models import it).

`as_pandas` reads a model's input the same way on DuckDB and on Spark (docs/scale.md).
Cluster-robust means and ratios, Student's t and chi-square tail probabilities without SciPy, the
E-value of VanderWeele and Ding (2017). See docs/methods.md for where each is used.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa


def as_pandas(relation) -> pd.DataFrame:
    """A dbt Python model's input as pandas, the same on both engines: a DuckDB relation (`.df()`) or a
    Spark DataFrame (`.toPandas()`, whose dates, times and decimals are made DuckDB's datetime64 and
    float64 here, so the models compute the same on either)."""
    if not hasattr(relation, "toPandas"):
        return relation.df()
    from pyspark.sql import types

    frame = relation.toPandas()
    for field in relation.schema.fields:
        if isinstance(field.dataType, (types.DateType, types.TimestampType, types.TimestampNTZType)):
            frame[field.name] = pd.to_datetime(frame[field.name])
        elif isinstance(field.dataType, types.DecimalType):
            frame[field.name] = frame[field.name].astype("float64")
    return frame


def group_sizes(relation, column: str) -> dict[str, int]:
    """Rows of a dbt Python model's input per value of one column, on DuckDB or Spark."""
    if hasattr(relation, "groupBy"):
        return {row[column]: int(row["count"]) for row in relation.groupBy(column).count().collect()}
    return {value: int(rows) for value, rows in relation.aggregate(f"{column}, count(*)", column).fetchall()}


def rows_where(relation, column: str, value: str) -> pd.DataFrame:
    """The rows of a dbt Python model's input whose `column` equals `value`, as pandas (`as_pandas`)."""
    literal = "'" + str(value).replace("'", "''") + "'"
    return as_pandas(relation.filter(f"{column} = {literal}"))


def rows_kept(relation, by: str, keep, max_rows: int, sizes: dict[str, int] | None = None) -> pd.DataFrame:
    """`keep(frame)` applied to a dbt Python model's input: to all of it at once when it has at most
    `max_rows` rows, else to the rows of one value of `by` at a time, the parts put together, so that
    memory follows the largest part and what is kept. `sizes`: `group_sizes(relation, by)` if the caller
    has it already."""
    sizes = group_sizes(relation, by) if sizes is None else sizes
    if sum(sizes.values()) <= max_rows:
        return keep(as_pandas(relation))
    parts = [keep(rows_where(relation, by, value)) for value in sorted(sizes)]
    return pd.concat(parts, ignore_index=True) if parts else keep(as_pandas(relation))


def model_result(result: pd.DataFrame | pa.Table, session) -> pd.DataFrame | pa.Table:
    """What a dbt Python model returns: its frame as it is on DuckDB; on Spark, a Spark DataFrame made
    from Arrow (so an Arrow schema's types are kept, where a pandas frame's would be guessed)."""
    if not hasattr(session, "createDataFrame"):
        return result
    table = result if isinstance(result, pa.Table) else pa.Table.from_pandas(result, preserve_index=False)
    # an empty text column has no type in pandas; Spark cannot store an untyped (void) column
    table = table.cast(pa.schema([pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f
                                  for f in table.schema]))
    return session.createDataFrame(table)


def t_quantile(probability: float, freedom: float) -> float:
    """Student's t quantile (Cornish-Fisher expansion about the normal; exact enough for intervals)."""
    z = normal_quantile(probability)
    v = float(freedom)
    return (z + (z ** 3 + z) / (4 * v) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * v ** 2)
            + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * v ** 3))


def normal_quantile(probability: float) -> float:
    """Inverse of the standard normal distribution function (bisection on math.erf)."""
    low, high = -10.0, 10.0
    for _ in range(100):
        middle = (low + high) / 2
        if 0.5 * (1 + math.erf(middle / math.sqrt(2))) < probability:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def chi_square_upper_tail(statistic: float, freedom: int) -> float:
    """P(chi-square with `freedom` degrees of freedom > statistic) by the Wilson-Hilferty approximation."""
    if freedom <= 0 or statistic is None or not math.isfinite(statistic):
        return float("nan")
    k = float(freedom)
    z = ((statistic / k) ** (1 / 3) - (1 - 2 / (9 * k))) / math.sqrt(2 / (9 * k))
    return 0.5 * math.erfc(z / math.sqrt(2))


def clustered_mean(values: np.ndarray, clusters: np.ndarray) -> tuple[float, float, int]:
    """(mean, cluster-robust standard error, number of clusters) of per-referral values."""
    n = values.size
    if n == 0:
        return float("nan"), float("nan"), 0
    estimate = float(values.mean())
    sums = pd.Series(values - estimate).groupby(clusters).sum().to_numpy()
    groups = sums.size
    if groups < 2:
        return estimate, float("nan"), groups
    variance = groups / (groups - 1) * float((sums ** 2).sum()) / n ** 2
    return estimate, math.sqrt(variance), groups


def wald_ratio(did: np.ndarray, engaged: np.ndarray, clusters: np.ndarray) -> tuple[float, float]:
    """(IV estimate, cluster-robust delta-method standard error) of mean(did) / mean(engaged)."""
    share = float(engaged.mean()) if engaged.size else 0.0
    if share == 0:
        return float("nan"), float("nan")
    estimate = float(did.mean()) / share
    influence = (did - estimate * engaged) / share
    sums = pd.Series(influence).groupby(clusters).sum().to_numpy()
    if sums.size < 2:
        return estimate, float("nan")
    variance = sums.size / (sums.size - 1) * float((sums ** 2).sum()) / did.size ** 2
    return estimate, math.sqrt(variance)


def clustered_covariance(values: np.ndarray, clusters: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(column means, cluster-robust covariance of the means, clusters) of a referrals x k matrix."""
    n = values.shape[0]
    means = values.mean(axis=0)
    sums = pd.DataFrame(values - means).groupby(clusters).sum().to_numpy()
    groups = sums.shape[0]
    covariance = groups / max(groups - 1, 1) * (sums.T @ sums) / n ** 2
    return means, covariance, groups


def e_value(ratio: float) -> float:
    """E-value of a risk (rate) ratio: the confounding strength that could explain it away."""
    if ratio is None or not math.isfinite(ratio) or ratio <= 0:
        return float("nan")
    ratio = 1 / ratio if ratio < 1 else ratio
    return ratio + math.sqrt(ratio * (ratio - 1))
