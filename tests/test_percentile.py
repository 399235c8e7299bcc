"""The one percentile rule (nearest rank) that reports, samples and benchmarks share."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.scenario import percentile


def test_nearest_rank_on_an_even_count_takes_the_lower_middle() -> None:
    # rank ceil(0.5 * 4) = 2: the old int(q * n) rule took rank 3 (the value 30).
    assert percentile([40.0, 10.0, 30.0, 20.0], 0.50) == 20.0


def test_p99_of_a_hundred_values_is_the_ninety_ninth() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # unsorted: 100 down to 1
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile(values, 0.0) == 1.0


def test_no_values_reads_zero() -> None:
    assert percentile([], 0.99) == 0.0


@pytest.mark.parametrize("q", [-0.1, 1.5, math.nan])
def test_a_quantile_outside_zero_to_one_is_refused(q: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        percentile([1.0], q)


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1),
       st.floats(min_value=0.0, max_value=1.0))
def test_the_value_has_at_least_q_of_the_values_at_or_below_it(values: list[float],
                                                                q: float) -> None:
    found = percentile(values, q)
    assert found in values
    at_or_below = sum(v <= found for v in values)
    below = sum(v < found for v in values)
    assert at_or_below >= q * len(values)
    assert below < q * len(values) or found == min(values)
