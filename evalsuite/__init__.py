"""evalsuite: blind, paired, randomized evaluation of robot-learning policies.

The data path, one module per stage:
    specs/registry -> plan -> runner -> journal -> stats/analysis -> report/tracking -> cli
"""

__version__ = "0.1.0"


def open_run(path):
    """A run folder for notebooks: ``.episodes()`` as a DataFrame, ``.results()`` (see evalsuite.api)."""
    from evalsuite.api import open_run as _open_run

    return _open_run(path)
