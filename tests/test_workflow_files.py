"""The promises the workflows make, checked on the files (actionlint and zizmor run in make test)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

WORKFLOWS = Path(__file__).resolve().parent.parent / ".github" / "workflows"
NEWSLETTER = (WORKFLOWS / "newsletter.yml").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["newsletter.yml", "ci.yml"])
def test_least_privilege_and_pinned_actions(name: str) -> None:
    text = (WORKFLOWS / name).read_text(encoding="utf-8")
    assert re.search(r"^permissions: \{\}$", text, re.M), "no top-level permissions: {}"
    uses = re.findall(r"uses: (\S+)", text)
    assert uses
    for action in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", action), f"{action} is not SHA-pinned"
    assert text.count("persist-credentials: false") == text.count("actions/checkout@")


def test_newsletter_schedule_inputs_and_concurrency() -> None:
    assert re.search(r"schedule:\n\s+- cron: \"[^\"]+\"", NEWSLETTER)
    assert "workflow_dispatch:" in NEWSLETTER
    assert re.search(r"\n\s+dry_run:\n", NEWSLETTER)
    assert re.search(r"\n\s+test_to:\n", NEWSLETTER)
    assert "cancel-in-progress: false" in NEWSLETTER
    assert "contents: write" in NEWSLETTER


def test_secrets_only_in_the_steps_that_need_them() -> None:
    steps = NEWSLETTER.split("\n      - ")
    for step in steps:
        if "secrets." in step:
            assert "crusader-mail " in step, (
                f"a step that runs no crusader-mail gets secrets:\n{step}"
            )
    head = steps[0]
    assert "secrets." not in head  # no workflow- or job-level secret environment


def test_state_is_committed_even_when_the_run_failed() -> None:
    commit = next(step for step in NEWSLETTER.split("\n      - ") if "commit-state.sh" in step)
    assert "always()" in commit
    assert "state subscribers" in commit
