"""Bad-input cases (see tests/bad_input_cases/__init__.py for the format)."""

CASES: list = []
DOC_ROWS: list = []
