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


# --- correct past 26 letters, fast, readable ---------------------------------------------------

from evalsuite.stats.letters import MAX_LETTERS, TooManyLetters, letter_display, rank_ranges  # noqa: E402

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator


def _random_graph(rng, size, density=None):
    names = [f"p{i}" for i in range(size)]
    density = rng.random() if density is None else density
    return names, {frozenset(p) for p in itertools.combinations(names, 2) if rng.random() < density}


def test_the_issue_example_eleven_policies_sixteen_differences():
    """Reproduced with the letters reused after 26 columns: two policies that differ shared 'a'."""
    names = [f"p{i}" for i in range(11)]
    pairs = [(0, 10), (0, 6), (0, 8), (1, 4), (1, 5), (10, 2), (10, 4), (10, 6), (10, 7), (10, 8), (2, 9), (3, 5),
             (3, 7), (4, 5), (5, 6), (6, 8)]
    different = {frozenset((f"p{a}", f"p{b}")) for a, b in pairs}
    letters = compact_letters(names, different)
    _check_display(names, different, letters)
    assert all(len(set(v)) == len(v) for v in letters.values())


@pytest.mark.parametrize("seed", range(40))
def test_random_graphs_up_to_30_policies_are_exact_or_refused(seed):
    """2-30 policies, random differences: an exact display within 26 letters, or TooManyLetters -
    never a letter used twice (which made 58 of 120 such graphs wrong)."""
    rng = np.random.default_rng(1000 + seed)
    names, different = _random_graph(rng, int(rng.integers(2, 31)))
    try:
        letters = compact_letters(names, different)
    except TooManyLetters:
        return
    _check_display(names, different, letters)
    assert len({c for v in letters.values() for c in v}) <= MAX_LETTERS


def test_every_letter_is_needed():
    """After Piepho's sweep no policy holds a letter it could drop: each of its letters (but a last
    one) is the only one it shares with some policy it does not differ from."""
    rng = np.random.default_rng(3)
    for _ in range(60):
        names, different = _random_graph(rng, int(rng.integers(3, 12)))
        try:
            letters = compact_letters(names, different)
        except TooManyLetters:
            continue
        for a in names:
            if len(letters[a]) == 1:
                continue
            for c in letters[a]:
                kept = set(letters[a]) - {c}
                assert any(c in letters[b] and not kept & set(letters[b]) for b in names if b != a), (a, c, letters)


def test_same_letters_whatever_the_hash_seed():
    """The pairs used to be read in set order, which depends on PYTHONHASHSEED: B got 'a' in one
    process and 'b' in another."""
    import os
    import subprocess
    import sys

    code = ("from evalsuite.stats.letters import compact_letters; "
            "print(compact_letters(['A', 'B', 'C', 'D'], {frozenset('BC'), frozenset('CD'), frozenset('AD')}))")
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": str(s)}).stdout for s in range(6)}
    assert len(outputs) == 1, outputs


def test_large_displays_are_fast_and_fall_back_to_rank_ranges():
    import time

    rng = np.random.default_rng(4)
    for size, density in ((30, 0.5), (60, 0.5), (60, 0.05), (100, 0.9)):
        names, different = _random_graph(rng, size, density)
        better = {tuple(sorted(p, key=names.index)) for p in different}  # names in rank order
        start = time.perf_counter()
        shown = letter_display(names, better)
        assert time.perf_counter() - start < 1.0, size
        if shown[names[0]].startswith("rank"):
            ranges = rank_ranges(names, better)
            assert shown == {n: f"rank {lo}" if lo == hi else f"rank {lo}-{hi}" for n, (lo, hi) in ranges.items()}
        else:
            _check_display(names, different, shown)
    all_differ = [f"p{i:02d}" for i in range(MAX_LETTERS + 1)]
    order = {(a, b) for a, b in itertools.combinations(all_differ, 2)}
    assert letter_display(all_differ[:-1], {p for p in order if all_differ[-1] not in p}) == {
        n: chr(ord("a") + i) for i, n in enumerate(all_differ[:-1])}  # 26 groups: one letter each
    assert letter_display(all_differ, order) == {n: f"rank {i + 1}" for i, n in enumerate(all_differ)}


def test_rank_ranges():
    """A > C, A > D, B > D: A ranks 1-2, B 1-3, C 2-4, D 3-4; with every direction right the true
    ranks lie inside (checked on all orders consistent with the differences)."""
    names = ["A", "B", "C", "D"]
    better = {("A", "C"), ("A", "D"), ("B", "D")}
    ranges = rank_ranges(names, better)
    assert ranges == {"A": (1, 2), "B": (1, 3), "C": (2, 4), "D": (3, 4)}
    for order in itertools.permutations(names):
        if all(order.index(w) < order.index(lo) for w, lo in better):
            assert all(ranges[n][0] <= order.index(n) + 1 <= ranges[n][1] for n in names), order
    assert letter_display(names, better) == compact_letters(names, {frozenset(p) for p in better})
    with pytest.raises(ValueError, match="unknown"):
        rank_ranges(names, {("A", "E")})
