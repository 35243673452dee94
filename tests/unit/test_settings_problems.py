"""`serve --check` re-reads subsets of a config file: written back, they must read as the same keys and values."""

from __future__ import annotations

import datetime
import tomllib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamsnap.cli.problems import _entries, _toml_document

pytestmark = pytest.mark.unit

# What tomllib gives: offsets in whole minutes, times without one.
offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda minutes: datetime.timezone(
    datetime.timedelta(minutes=minutes)))
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),  # nan != nan; written as `nan` all the same
    st.text(st.characters(exclude_categories=["Cs"])),  # every character but lone surrogates (not in TOML)
    st.datetimes(timezones=st.none() | offsets),
    st.dates(),
    st.times(),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner,
                                                                                            max_size=3), max_leaves=8)
keys = st.text(st.characters(exclude_categories=["Cs"]), min_size=1)


def normal(value: Any) -> Any:
    """A TOML datetime with an offset comes back with a fixed-offset tzinfo: compare as instants and offsets."""
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return (value.astimezone(datetime.UTC), value.utcoffset())
    if isinstance(value, list):
        return [normal(item) for item in value]
    if isinstance(value, dict):
        return {key: normal(item) for key, item in value.items()}
    return value


@given(st.dictionaries(keys, values, max_size=4), st.dictionaries(keys, values, min_size=1, max_size=3))
def test_a_document_reads_back_as_written(top: dict[str, Any], section: dict[str, Any]) -> None:
    data = {**{key: value for key, value in top.items() if key != "http"}, "http": section}
    entries = _entries(data)
    assert [given.table for given in entries if given.table] == ["http"] * len(section)  # a section's keys apart
    assert normal(tomllib.loads(_toml_document(entries))) == normal(data)
