"""Statistics for success rates. Imports numpy, scipy and statsmodels only (a test enforces it); the
Bradley-Terry fit of ``ranking`` imports choix (the console extra) when it runs.

Every function states the shapes it takes; every random function takes a keyword-only
``numpy.random.Generator``.
"""

from evalsuite.stats.bootstrap import stratified_bootstrap_mean
from evalsuite.stats.intervals import INTERVAL_METHODS, Interval, beta_posterior, proportion_interval
from evalsuite.stats.multiple import adjust_pvalues
from evalsuite.stats.paired import PairedComparison, paired_comparison

__all__ = [
    "INTERVAL_METHODS",
    "Interval",
    "PairedComparison",
    "adjust_pvalues",
    "beta_posterior",
    "paired_comparison",
    "proportion_interval",
    "stratified_bootstrap_mean",
]
