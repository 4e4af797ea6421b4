"""Every random stream of evalsuite and its built-in plugins, named in one place.

A stream is ``SeedSequence(root, spawn_key=(NUMBER, *more))``: a pure function of the run's root
seed (or an episode's seed) and the stream's number, so each random choice is reproducible and
independent of every other. The numbers are part of every recorded result - never renumber one;
add a new name with an unused number. GROUPS and WORST_CASE_SEARCH share 13 for historical reasons
(their keys differ in length - (13, policy, metric) and (13,) - so their draws differ); keep them.
"""

from __future__ import annotations

import numpy as np

INITIAL_CONDITIONS = 0  # (0, hash(task), index): an initial condition's environment and policy seeds
TRIAL_ORDER = 1  # the order the trials run in
BLINDING = 2  # which policy gets which code; (2, n) for a combined folder of n policies
DEMOS = 4  # (4, hash(task), index): a scripted demonstration's initial condition
MIXED_MODEL = 5  # the mixed model's variational fit
AGGREGATES = 6  # rliable's bootstrap over episodes
SELECT_FRESH = 7  # the fresh root seed of a selection's confirmation run
FAMILY_EPISODE_NOISE = 11  # an MDP family episode's noise (from the episode's seed)
FAMILY_ANALYSIS = 12  # the family section's bootstrap
GROUPS = 13  # (13, ...): algorithm groups' bootstrap
WORST_CASE_SEARCH = 13  # (13,): the seeds of the worst-case search's runs
WORST_CASE_CEM = 14  # the CEM search's candidates
PROGRESS = 21  # the progress section's bootstrap


def sequence(root: int, stream: int, *more: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(root, spawn_key=(stream, *more))


def generator(root: int, stream: int, *more: int) -> np.random.Generator:
    return np.random.default_rng(sequence(root, stream, *more))
