"""User-supplied strings (policy labels, a policy's notes such as an lbm instruction, task names)
reach report.html as text, never as markup."""

import json

import pytest

from evalsuite import report
from evalsuite.results import Results
from tests.conftest import REPO

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"


def test_hostile_labels_and_notes_render_as_text(tmp_path):
    data = json.loads((REPO / "reports" / "example" / "results.json").read_text())
    old = next(iter(data["policies"]))
    new = f"lbm:instruction={HOSTILE}"
    text = json.dumps(data).replace(json.dumps(old)[1:-1], new.replace('"', '\\"'))
    data = json.loads(text)
    data["policies"][new]["notes"] = {"instruction": HOSTILE}
    results = Results.from_dict(data)
    assert any(r.policy == new for r in results.per_task)
    _, html_path = report.write(tmp_path, results)
    page = html_path.read_text()
    assert "<script" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # shown, escaped, where the label appears
    assert HOSTILE in (tmp_path / "report.md").read_text()  # the Markdown keeps the text as it was
