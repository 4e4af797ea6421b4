"""evalsuite: blind, paired, randomized evaluation of robot-learning policies.

The data path, one module per stage:
    specs/registry -> plan -> runner -> journal -> stats/analysis -> report/tracking -> cli
"""

__version__ = "0.1.0"
