"""Compact letter display (Piepho 2004, insert-absorb-sweep): policies sharing a letter cannot be
told apart at the chosen level; any two policies with no common letter differ significantly.

A display needs one letter per column, and the columns (the maximal sets of policies no two of
which differ) can number far more than the policies: 26 letters are a hard limit for single-letter
columns, and a reader cannot use many more per policy anyway. Past ``MAX_LETTERS`` columns,
``letter_display`` shows each policy's rank range instead (``rank_ranges``), which stays correct,
short and fast for any number of policies.
"""

from __future__ import annotations

import string
from collections.abc import Collection, Sequence

MAX_LETTERS = len(string.ascii_lowercase)
# Insert-and-absorb can pass through many more columns than it ends with; beyond this many it stops
# (a display that large is not shown as letters anyway), which bounds the time at any size.
_COLUMN_BUDGET = 4 * MAX_LETTERS


class TooManyLetters(ValueError):
    """The letter display would need more than ``MAX_LETTERS`` letters."""


def _columns(names: Sequence[str], different: Collection[frozenset[str]], budget: int) -> list[int] | None:
    """Insert-and-absorb on bit masks (bit i: names[i]); None once the columns exceed ``budget``."""
    index = {n: i for i, n in enumerate(names)}
    unknown = {n for pair in different for n in pair} - set(index)
    if unknown or any(len(pair) != 2 for pair in different):
        raise ValueError(f"every pair in different must be two of names (unknown: {sorted(unknown)})")
    pairs = sorted(tuple(sorted(index[n] for n in pair)) for pair in different)  # a fixed order: same output
    columns = [(1 << len(names)) - 1]  # start: everyone in one group
    for a, b in pairs:
        both = (1 << a) | (1 << b)
        kept = [c for c in columns if c & both != both]
        split = [c & ~(1 << x) for c in columns if c & both == both for x in (a, b)]  # insert
        new: list[int] = []
        for i, c in enumerate(split):  # absorb: drop a new column contained in another column
            if not any(c & ~d == 0 for d in kept) and not any(
                    c & ~d == 0 and (c != d or j < i) for j, d in enumerate(split) if j != i):
                new.append(c)
        columns = kept + new
        if len(columns) > budget:
            return None
    return columns


def _members(column: int) -> list[int]:
    return [i for i in range(column.bit_length()) if column >> i & 1]


def _sweep(columns: list[int]) -> list[int]:
    """Piepho's sweep: a policy leaves a column when every pair it forms there is also in another
    column (and it keeps a letter elsewhere); columns left empty go. Sharing is only removed where
    it is redundant, so the display stays exact with fewer letters."""
    columns = list(columns)
    for j in range(len(columns)):
        for i in _members(columns[j]):
            elsewhere = 0  # everyone who shares another column with i
            for k, c in enumerate(columns):
                if k != j and c >> i & 1:
                    elsewhere |= c
            if elsewhere and columns[j] & ~elsewhere & ~(1 << i) == 0:
                columns[j] &= ~(1 << i)
    return [c for c in columns if c]


def compact_letters(names: Sequence[str], different: Collection[frozenset[str]]) -> dict[str, str]:
    """Letters per name, from the set of pairs that differ significantly.

    ``names`` in display order (e.g. best first); letters are assigned in that order. Raises
    ``TooManyLetters`` when the display needs more than ``MAX_LETTERS`` letters (letters reused
    would make policies that differ share one).
    """
    names = list(names)
    columns = _columns(names, different, _COLUMN_BUDGET)
    if columns is not None:
        columns = _sweep(sorted(columns, key=_members))
    if columns is None or len(columns) > MAX_LETTERS:
        raise TooManyLetters(f"{len(names)} policies need more than {MAX_LETTERS} letters")
    members = sorted(map(_members, columns))  # by first member in display order, then the next
    return {n: "".join(string.ascii_lowercase[j] for j, m in enumerate(members) if i in m)
            for i, n in enumerate(names)}


def rank_ranges(names: Sequence[str], better: Collection[tuple[str, str]]) -> dict[str, tuple[int, int]]:
    """Ranks (1 = best) each name can hold given the significant ordered pairs (winner, loser):
    from 1 + the number significantly better to the count of names - the number significantly
    worse. When every significant direction is right - jointly, with probability >= the level for
    simultaneous (Holm/Bonferroni) tests - every true rank lies in its range."""
    names = list(names)
    unknown = {n for pair in better for n in pair} - set(names)
    if unknown:
        raise ValueError(f"every pair in better must be two of names (unknown: {sorted(unknown)})")
    return {n: (1 + sum(1 for _, loser in better if loser == n), len(names) - sum(1 for w, _ in better if w == n))
            for n in names}


def letter_display(names: Sequence[str], better: Collection[tuple[str, str]]) -> dict[str, str]:
    """The letters of ``compact_letters``, or past ``MAX_LETTERS`` letters every policy's rank
    range as "rank 2-5" ("rank 1" when it is a single rank). ``better``: (winner, loser) pairs
    that differ significantly; ``names`` in display order (best first)."""
    try:
        return compact_letters(names, {frozenset(pair) for pair in better})
    except TooManyLetters:
        ranges = rank_ranges(names, better)
        return {n: f"rank {low}" if low == high else f"rank {low}-{high}" for n, (low, high) in ranges.items()}
