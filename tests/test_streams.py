"""Random streams are named in one place (evalsuite/streams.py): no module spells a spawn key of
its own, and no two names share a number except the documented pair."""

import re

import pytest

from evalsuite import streams
from tests.conftest import REPO

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator


def test_every_stream_has_its_own_number():
    numbers = {name: value for name, value in vars(streams).items() if name.isupper() and isinstance(value, int)}
    shared = {n for n in numbers.values() if list(numbers.values()).count(n) > 1}
    assert shared == {13} and {k for k, v in numbers.items() if v == 13} == {"GROUPS", "WORST_CASE_SEARCH"}


def test_no_module_spells_its_own_spawn_key():
    spelled = [f"{path.relative_to(REPO)}:{number}"
               for folder in ("evalsuite", "suites", "policies") for path in (REPO / folder).rglob("*.py")
               if path.name != "streams.py"
               for number, line in enumerate(path.read_text().splitlines(), 1)
               if re.search(r"spawn_key\s*=", line) and not line.lstrip().startswith(("#", "``"))]
    assert not spelled, spelled


def test_a_stream_is_the_seed_sequence_it_names():
    assert streams.generator(5, streams.TRIAL_ORDER).integers(1 << 30) == \
        __import__("numpy").random.default_rng(__import__("numpy").random.SeedSequence(5, spawn_key=(1,))).integers(1 << 30)
