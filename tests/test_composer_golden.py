"""Golden files: a fixed issue rendered with the repository's templates.

When a template or the composer changes on purpose, regenerate the files with

    make golden            # = .venv/bin/python -m tests.support.golden

and review the diff of tests/golden/ (see tests/golden/README.md).
"""

from __future__ import annotations

import pytest

from tests.support.golden import GOLDEN, render_golden

HINT = "run `make golden` (python -m tests.support.golden) if the change is deliberate"


@pytest.mark.parametrize(
    ("name", "part"),
    [("issue.html", "html"), ("issue.txt", "text"), ("issue.subject.txt", "subject")],
)
def test_fixed_issue_matches_golden_file(name: str, part: str) -> None:
    issue = render_golden()
    rendered = {
        "html": issue.html,
        "text": issue.text,
        "subject": f"{issue.subject}\n{issue.preheader}\n",
    }[part]
    expected = (GOLDEN / name).read_text(encoding="utf-8")
    assert rendered == expected, f"{name} differs from the golden file: {HINT}"
