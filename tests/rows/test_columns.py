"""Column resolution against what Fivetran landed: spellings, the identifier allow-list, near misses."""

from __future__ import annotations

import pytest

from sync.core.errors import SourceSchemaError
from sync.rows.columns import is_safe, quote, quote_project, tables_from_information_schema


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("stage_name", True),  # Fivetran's default snake_case
        ("StageName", True),  # API names
        ("_fivetran_synced", True),  # bookkeeping columns start with an underscore
        ("Billing Country-Code", False),  # BigQuery flexible column name: space and hyphen
        ("name`; DROP TABLE x; --", False),  # a backtick would end the quoting
        ("name\n", False),  # a trailing newline slips past a "$" anchor
        ("1st_column", False),  # must not start with a digit
        ("", False),  # nothing to quote
        ("a" * 300, True),  # BigQuery's longest column name
        ("a" * 301, False),  # longer than BigQuery allows
    ],
)
def test_identifier_allow_list(name, safe):
    assert is_safe(name) is safe
    if safe:
        assert quote(name) == f"`{name}`"
    else:
        with pytest.raises(SourceSchemaError, match="refusing unsafe BigQuery identifier"):
            quote(name)


def test_project_id_with_a_trailing_newline_is_refused():
    assert quote_project("local-project") == "`local-project`"
    with pytest.raises(SourceSchemaError, match="unsafe BigQuery project id"):
        quote_project("local-project\n")


def _account(*columns: str):
    rows = [("account", c, "STRING") for c in columns]
    return tables_from_information_schema("salesforce", rows)["account"]


def test_unsafe_columns_are_set_aside_not_resolved():
    account = _account("id", "name", "Billing Country-Code", "industry")
    assert sorted(account.columns) == ["id", "industry", "name"]
    assert account.unsafe == ("Billing Country-Code",)
    assert account.find("billing_country_code") is None  # never referenced by any builder


@pytest.mark.parametrize(
    ("column", "logical"),
    [
        ("Stage Name", "stage_name"),  # a space where the underscore should be
        ("stage-name", "stage_name"),  # a hyphen
        ("Close.Date", "close_date"),  # any other separator
    ],
)
def test_required_column_with_an_unsafe_name_is_named_in_the_error(column, logical):
    table = tables_from_information_schema("salesforce", [("opportunity", "id", "STRING"), ("opportunity", column, "STRING")])[
        "opportunity"
    ]
    with pytest.raises(SourceSchemaError, match=rf"column '{column}' would serve logical column '{logical}'") as info:
        table.require(logical)
    assert "rename the column" in str(info.value)


def test_missing_required_column_without_a_near_miss_lists_the_spellings_tried():
    with pytest.raises(SourceSchemaError, match=r"no column for logical column 'name' \(tried name, Name\)"):
        _account("id", "Billing Country-Code").require("name")
