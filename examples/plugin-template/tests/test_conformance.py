"""Run after `pip install -e .`: evalsuite's own conformance checks on this package's plugins."""

from evalsuite.testing import check_policy, check_suite


def test_the_suite_conforms():
    check_suite("template-reach")


def test_the_policy_conforms():
    check_policy("template-reach", "template-reach", "reach-near")
    check_policy("template-reach", "template-reach", "reach-far", noise=0.0)
