"""Cases for tests/test_bad_inputs.py, one module per area, each with

- ``CASES``: (id, argv, setup, fragment of the one-line message) as in test_bad_inputs.py; a
  callable setup gets the copied run folder (its parent is the case's temporary folder);
- ``DOC_ROWS`` (optional): (id, what was done, the message) for cases tested in their own test
  (a subprocess, a locale, a signal), so docs/bad-inputs.md lists every case in one table.
"""

from tests.bad_input_cases import limits, received, remote, tracking, video

MODULES = (received, limits, tracking, video, remote)
CASES = [case for module in MODULES for case in module.CASES]
DOC_ROWS = [row for module in MODULES for row in getattr(module, "DOC_ROWS", [])]
