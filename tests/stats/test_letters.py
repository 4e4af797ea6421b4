import itertools

import numpy as np
import pytest

from evalsuite.stats.letters import compact_letters


def _check_display(names, different, letters):
    for a, b in itertools.combinations(names, 2):
        share = bool(set(letters[a]) & set(letters[b]))
        assert share == (frozenset((a, b)) not in different), (a, b, letters)


def test_hand_cases():
    names = ["A", "B", "C"]
    assert compact_letters(names, set()) == {"A": "a", "B": "a", "C": "a"}
    assert compact_letters(names, {frozenset("AC")}) == {"A": "a", "B": "ab", "C": "b"}
    all_diff = {frozenset(p) for p in itertools.combinations(names, 2)}
    assert compact_letters(names, all_diff) == {"A": "a", "B": "b", "C": "c"}


@pytest.mark.parametrize("seed", range(30))
def test_random_difference_sets_are_displayed_exactly(seed):
    rng = np.random.default_rng(seed)
    names = [f"p{i}" for i in range(rng.integers(2, 7))]
    different = {frozenset(p) for p in itertools.combinations(names, 2) if rng.random() < 0.5}
    _check_display(names, different, compact_letters(names, different))
