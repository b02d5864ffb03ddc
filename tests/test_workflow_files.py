"""The promises the workflows make, checked on the files (actionlint and zizmor run in make test)."""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path

import pytest

WORKFLOWS = Path(__file__).resolve().parent.parent / ".github" / "workflows"
NEWSLETTER = (WORKFLOWS / "newsletter.yml").read_text(encoding="utf-8")
INBOX = (WORKFLOWS / "inbox.yml").read_text(encoding="utf-8")
STATE_WORKFLOWS = {"newsletter.yml": NEWSLETTER, "inbox.yml": INBOX}


def steps(text: str) -> list[str]:
    return text.split("\n      - ")


@pytest.mark.parametrize("name", ["newsletter.yml", "inbox.yml", "ci.yml"])
def test_least_privilege_and_pinned_actions(name: str) -> None:
    text = (WORKFLOWS / name).read_text(encoding="utf-8")
    assert re.search(r"^permissions: \{\}$", text, re.M), "no top-level permissions: {}"
    uses = re.findall(r"uses: (\S+)", text)
    assert uses
    for action in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+(/[\w.-]+)?@[0-9a-f]{40}", action), (
            f"{action} is not SHA-pinned"
        )
    assert text.count("persist-credentials: false") == text.count("actions/checkout@")


def test_newsletter_schedule_inputs_and_concurrency() -> None:
    assert re.search(r"schedule:\n\s+- cron: \"[^\"]+\"", NEWSLETTER)
    assert "workflow_dispatch:" in NEWSLETTER
    assert re.search(r"\n\s+dry_run:\n", NEWSLETTER)
    assert re.search(r"\n\s+test_to:\n", NEWSLETTER)
    assert "cancel-in-progress: false" in NEWSLETTER
    assert "contents: write" in NEWSLETTER


@pytest.mark.parametrize("text", STATE_WORKFLOWS.values(), ids=STATE_WORKFLOWS.keys())
def test_secrets_only_in_the_steps_that_need_them(text: str) -> None:
    for step in steps(text):
        if "secrets." in step:
            assert "crusader-mail " in step, (
                f"a step that runs no crusader-mail gets secrets:\n{step}"
            )
    head = steps(text)[0]
    assert "secrets." not in head  # no workflow- or job-level secret environment
    assert "contents: write" not in head.split("\njobs:")[0]  # write only on the job


@pytest.mark.parametrize("text", STATE_WORKFLOWS.values(), ids=STATE_WORKFLOWS.keys())
def test_state_is_committed_even_when_the_run_failed(text: str) -> None:
    commit = next(
        s for s in steps(text) if "run: bash scripts/commit-state.sh state subscribers" in s
    )
    assert "always()" in commit
    assert "crusader-mail " not in commit


def test_the_send_pushes_its_sending_record_before_the_first_request() -> None:
    run = next(step for step in steps(NEWSLETTER) if "crusader-mail run" in step)
    assert '--checkpoint "bash scripts/commit-state.sh state subscribers"' in run
    assert "GITHUB_TOKEN: ${{ github.token }}" in run  # the checkpoint pushes
    assert re.search(r"\n\s+resend_uncertain:\n", NEWSLETTER)


def test_the_inbox_runs_every_15_minutes_and_never_beside_the_newsletter() -> None:
    [cron] = re.findall(r'- cron: "([^"]+)"', INBOX)
    minutes = sorted(int(m) for m in cron.split()[0].split(","))
    assert cron.split()[1:] == ["*", "*", "*", "*"]
    assert len(minutes) == 4
    assert {b - a for a, b in pairwise(minutes)} == {15}
    assert "workflow_dispatch:" in INBOX
    [process] = [step for step in steps(INBOX) if "crusader-mail inbox" in step]
    assert "crusader-mail inbox process --imap --sync-suppressions" in process
    groups = {
        name: re.findall(
            r"concurrency:\n\s+group: ([^\n#]+?) *(?:#[^\n]*)?\n\s+cancel-in-progress: false", text
        )
        for name, text in STATE_WORKFLOWS.items()
    }
    assert groups["inbox.yml"] == groups["newsletter.yml"] != []


def test_the_archive_is_deployed_by_a_job_that_may_only_deploy_pages() -> None:
    send, pages = NEWSLETTER.split("\n  pages:\n")
    permissions = re.search(r"\n    permissions:\n((?:      .*\n)+)", pages)
    assert permissions is not None
    granted = [line.split("#")[0].strip() for line in permissions.group(1).splitlines()]
    assert granted == ["pages: write", "id-token: write"]
    assert "needs: newsletter" in pages
    assert "needs.newsletter.outputs.archive == 'true'" in pages
    assert re.findall(r"uses: (actions/[\w-]+)@", pages) == ["actions/deploy-pages"]
    assert "secrets." not in pages
    assert "actions/checkout" not in pages  # nothing to read: the artifact is all it deploys
    assert "uses: actions/upload-pages-artifact@" in send
    assert "path: archive/" in send
    commit = next(s for s in steps(send) if "run: bash scripts/commit-state.sh" in s)
    assert "commit-state.sh state subscribers archive notes" in commit


def test_approve_and_note_reach_the_run_as_data() -> None:
    assert re.search(r"\n\s+approve:\n", NEWSLETTER)
    assert re.search(r"\n\s+note:\n", NEWSLETTER)
    run = next(step for step in steps(NEWSLETTER) if "crusader-mail run" in step)
    assert "APPROVE: ${{ inputs.approve }}" in run
    assert "NOTE: ${{ inputs.note }}" in run
    assert '--approve "$APPROVE"' in run
    assert '--note "$NOTE"' in run
    script = run.split("run: |", 1)[1]
    assert "${{" not in script  # an input is never pasted into the shell script
    preview = next(s for s in steps(NEWSLETTER) if "newsletter-awaiting-approval" in s)
    assert "path: preview/" in preview
