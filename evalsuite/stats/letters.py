"""Compact letter display (Piepho 2004, insert-and-absorb): policies sharing a letter cannot be
told apart at the chosen level; any two policies with no common letter differ significantly.
"""

from __future__ import annotations

import string
from collections.abc import Sequence


def compact_letters(names: Sequence[str], different: set[frozenset[str]]) -> dict[str, str]:
    """Letters per name, from the set of pairs that differ significantly.

    ``names`` in display order (e.g. best first); letters are assigned in that order.
    """
    names = list(names)
    columns: list[set[str]] = [set(names)]  # start: everyone in one group
    for pair in different:
        a, b = tuple(pair)
        new_columns = []
        for col in columns:
            if a in col and b in col:  # insert: split the group that holds both
                new_columns += [col - {a}, col - {b}]
            else:
                new_columns.append(col)
        # absorb: drop groups contained in another
        columns = [c for i, c in enumerate(new_columns)
                   if c and not any(i != j and c <= d and (c != d or j < i) for j, d in enumerate(new_columns))]
    order = {n: i for i, n in enumerate(names)}
    columns.sort(key=lambda c: min(order[n] for n in c))
    letters = string.ascii_lowercase
    return {n: "".join(letters[i % 26] for i, c in enumerate(columns) if n in c) for n in names}
