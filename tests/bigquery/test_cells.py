"""Result cells converted per column give exactly the client's own values, on the emulator.

Every query runs once; its result is read twice through the real client: the client's Row
objects (its generic per-cell conversion) and ``results.read_slice`` (the per-column path).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from decimal import Decimal

import pytest

from sync.bigquery import cells, results
from sync.bigquery.results import JobRef

# One column per type the run's results hold, each with the edges of its JSON text.
_TYPED = """
SELECT 1 AS k, 'plain' AS s, 1 AS i, 1.5 AS f, CAST('1234.57' AS NUMERIC) AS n, TRUE AS b,
  TIMESTAMP '2026-12-06 10:00:00.123456+00' AS t, DATE '2026-12-31' AS d, CAST('1.5' AS BIGNUMERIC) AS bn
UNION ALL SELECT 2, 'tab\tand "quote"', -9223372036854775808, CAST('NaN' AS FLOAT64), CAST('-0.01' AS NUMERIC), FALSE,
  TIMESTAMP '1969-07-20 20:17:40+00', DATE '0001-01-01', CAST('-12345678901234.5' AS BIGNUMERIC)
UNION ALL SELECT 3, '', 9223372036854775807, CAST('-inf' AS FLOAT64), CAST('999999999999999.999' AS NUMERIC), TRUE,
  TIMESTAMP '2099-01-01 00:00:00+00', DATE '9999-12-31', CAST('0' AS BIGNUMERIC)
UNION ALL SELECT 4, CAST(NULL AS STRING), CAST(NULL AS INT64), CAST(NULL AS FLOAT64), CAST(NULL AS NUMERIC),
  CAST(NULL AS BOOL), CAST(NULL AS TIMESTAMP), CAST(NULL AS DATE), CAST(NULL AS BIGNUMERIC)
ORDER BY k
"""


def _evaluated(bq, sql):
    job = bq.query(sql)
    job.result(timeout=60, max_results=0)
    return JobRef(job.project, job.location, job.job_id)


def _client_values(bq, ref):
    rows = bq.get_job(ref.job_id, project=ref.project, location=ref.location).result(timeout=60)
    return [dict(zip(row.keys(), row, strict=True)) for row in rows]


def _same(a, b):
    """Equal values of the same type; NaN equals NaN here."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


def test_each_column_type_converts_to_the_clients_value(bq_client):
    ref = _evaluated(bq_client, _TYPED)
    expected = _client_values(bq_client, ref)
    schema = bq_client.get_job(ref.job_id, location=ref.location).result(timeout=60).schema
    assert cells.row_converter(schema) is not None, "this result must take the per-column path"
    piece = results.read_slice(bq_client, ref, 0, None, time.monotonic() + 60)
    got = list(piece.rows)

    assert len(got) == len(expected) == 4
    for mine, theirs in zip(got, expected, strict=True):
        assert list(mine) == list(theirs)
        for key in theirs:
            assert _same(mine[key], theirs[key]), (key, mine[key], theirs[key])
    # The cases that matter, spelled out: aware UTC datetimes, exact decimals, real dates.
    assert got[0]["t"] == dt.datetime(2026, 12, 6, 10, 0, 0, 123456, tzinfo=dt.UTC)
    assert got[1]["t"] == dt.datetime(1969, 7, 20, 20, 17, 40, tzinfo=dt.UTC)
    assert got[2]["n"] == Decimal("999999999999999.999")
    assert got[0]["d"] == dt.date(2026, 12, 31)
    assert all(v is None for k, v in got[3].items() if k != "k")


def test_a_slice_in_the_middle_of_a_result_matches_the_client(bq_client):
    ref = _evaluated(bq_client, "SELECT x AS i, CAST(x AS STRING) AS s FROM UNNEST(GENERATE_ARRAY(1, 50)) AS x ORDER BY x")
    piece = results.read_slice(bq_client, ref, 20, 7, time.monotonic() + 60)
    assert list(piece.rows) == [{"i": n, "s": str(n)} for n in range(21, 28)]


def test_the_runs_own_results_take_the_per_column_path(env, bq_client):
    from standins.generator import generate
    from sync.bigquery.source import BigQuerySource

    env.seed(generate(30, seed=93))
    source = BigQuerySource(bq_client, env.settings())
    tables = source.tables()
    schemas = []
    original = cells.row_converter

    def recording(schema):
        converter = original(schema)
        schemas.append((schema, converter))
        return converter

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cells, "row_converter", recording)
        env.drain()
    assert tables.links is not None
    assert len(schemas) >= 2  # the opportunity and the link streams, at least
    assert all(converter is not None for _, converter in schemas), [s for s, c in schemas if c is None]


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("SELECT [1, 2] AS a", "REPEATED"),  # a column mode the per-column path does not take
        ("SELECT STRUCT(1 AS x) AS r", "RECORD"),  # a type it does not take
        ("SELECT DATETIME '2026-12-06 10:00:00' AS dt", "DATETIME"),
    ],
)
def test_other_types_fall_back_to_the_client(bq_client, sql, why):
    ref = _evaluated(bq_client, sql)
    expected = _client_values(bq_client, ref)
    job = bq_client.get_job(ref.job_id, project=ref.project, location=ref.location)
    assert cells.row_converter(job.result(timeout=60).schema) is None, why
    assert list(results.read_slice(bq_client, ref, 0, None, time.monotonic() + 60).rows) == expected
