"""``crusader-mail send``: options, --json, summaries without addresses, exit codes.

Here ``pipeline.send_stage`` is replaced by :func:`tests.support.sending.send_issue`, which
hands a fixed issue to the real ``deliver``/``send_test``, so the command's output can be
checked against known numbers; ``tests/test_pipeline.py`` runs the real stage end to end.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from peers.sendgrid_server import SendGridServer

from crusader_mail import pipeline
from crusader_mail.cli import cli, main
from crusader_mail.cli import run as run_cli
from crusader_mail.cli.context import AppContext
from crusader_mail.clock import Clock, FixedClock
from crusader_mail.delivery.batches import SendProgress
from crusader_mail.delivery.client import ClientFactory
from crusader_mail.errors import ConfigError, SendError, SendRejected
from crusader_mail.models import SendReport, Status
from crusader_mail.pipeline import RunReport, SendRun
from crusader_mail.settings import LoadedSettings, Settings
from tests.support.sending import make_issue, make_readers, make_settings, send_issue

REPO = Path(__file__).resolve().parent.parent
KEYS = {
    "issue",
    "dry_run",
    "recipients",
    "delivered",
    "skipped",
    "requests",
    "retries",
    "failed",
    "uncertain",
    "issues",
}


@pytest.fixture(autouse=True)
def stage(monkeypatch: pytest.MonkeyPatch) -> None:
    def send_stage(
        settings: Settings,
        clock: Clock,
        factory: ClientFactory | None,
        *,
        dry_run: bool,
        to: str | None,
        resend_uncertain: bool,
        progress: SendProgress | None = None,
        checkpoint: Callable[[], None] | None = None,
        fetch_progress: SendProgress | None = None,
    ) -> SendRun:
        try:
            report = send_issue(
                make_issue(),
                settings,
                clock,
                factory,
                dry_run=dry_run,
                to=to,
                resend_uncertain=resend_uncertain,
                progress=progress,
                checkpoint=checkpoint,
            )
        except SendError as error:  # as the real stage: the partial report and the error
            return SendRun([error.report] if isinstance(error.report, SendReport) else [], error)
        return SendRun([report])

    monkeypatch.setattr(pipeline, "send_stage", send_stage, raising=False)


def _invoke(settings: Settings, clock: FixedClock, *args: str) -> Any:
    app = AppContext(clock=clock, _loaded=LoadedSettings(settings, None, {}))
    return CliRunner().invoke(cli, ["send", *args], obj=app)


def test_send_json_prints_one_object_with_the_documented_keys(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = make_settings(tmp_path, sendgrid_server)
    make_readers(settings, clock, 12, others={Status.PENDING: 2})
    sendgrid_server.add_suppressions("bounces", ["reader00003@example.com"])
    result = _invoke(settings, clock, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == KEYS
    assert data["dry_run"] is False
    assert (data["recipients"], data["delivered"], data["requests"]) == (11, 11, 1)
    assert data["skipped"]["bounced"] == 1
    assert data["skipped"]["pending"] == 2
    assert len(sendgrid_server.per_address()) == 11


def test_dry_run_needs_no_key_and_prints_only_masked_addresses(
    tmp_path: Path, clock: FixedClock
) -> None:
    settings = make_settings(tmp_path, secret=None)
    make_readers(settings, clock, 4)
    result = _invoke(settings, clock, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would be delivered" in result.output
    assert "r•••@example.com" in result.output
    assert "reader00000@" not in result.output
    assert "throwaway key" in result.output
    assert (settings.outbox_dir / "first-reader.eml").is_file()


def test_to_sends_one_test_message(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = make_settings(tmp_path, sendgrid_server)
    make_readers(settings, clock, 4)
    result = _invoke(settings, clock, "--to", "editor@example.com", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["delivered"] == 1
    [delivery] = sendgrid_server.deliveries
    assert delivery.subject.startswith("[TEST] ")


def test_a_rejected_send_still_prints_its_partial_report_in_json(
    tmp_path: Path, clock: FixedClock, sendgrid_server: SendGridServer
) -> None:
    settings = make_settings(tmp_path, sendgrid_server)
    make_readers(settings, clock, 3)
    sendgrid_server.fail(400, paths="/v3/mail/send")  # a 400 fault, as SendGrid answers it
    result = _invoke(settings, clock, "--json")
    assert isinstance(result.exception, SendRejected)
    assert "HTTP 400" in str(result.exception)
    assert json.loads(result.stdout)["delivered"] == 0


def test_the_real_command_without_an_api_key_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRUSADER_MAIL_", "SENDGRID_"))}
    (tmp_path / "crusader-mail.toml").write_text('feeds = []\n[newsletter]\nname = "T"\n')
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "crusader-mail"), "send", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "crusader-mail: error: sendgrid.api_key is not set: set SENDGRID_API_KEY "
        "(a key with Mail Send access)"
    ]
    assert done.stdout == ""


def test_main_keeps_every_exit_code(
    tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``main`` runs click outside standalone mode: a command's Exit(1), a library error's
    code and an interrupt (click turns Ctrl-C into Abort) all reach the shell."""
    settings = make_settings(tmp_path)
    make_readers(settings, clock, 2)

    def outcome(error: BaseException | None, *args: str) -> object:
        def stage(*_args: object, **_options: object) -> SendRun:
            if error is not None:
                raise error
            return SendRun([SendReport(issue="x", dry_run=True, failed=1)])

        monkeypatch.setattr(pipeline, "send_stage", stage)
        app = AppContext(clock=clock, _loaded=LoadedSettings(settings, None, {}))
        with pytest.raises(SystemExit) as done:
            main(["send", *args], obj=app)
        return done.value.code

    assert outcome(None, "--dry-run") == 0
    assert outcome(KeyboardInterrupt(), "--dry-run") == 130
    assert outcome(SendRejected("HTTP 400"), "--dry-run") == 1
    assert outcome(ConfigError("bad"), "--dry-run") == 2

    def failed_run(*_args: object, **_options: object) -> RunReport:
        return RunReport(dry_run=True, error="SendGrid answered HTTP 500")

    monkeypatch.setattr(run_cli, "run_pipeline", failed_run)
    app = AppContext(clock=clock, _loaded=LoadedSettings(settings, None, {}))
    with pytest.raises(SystemExit) as done:
        main(["run", "--dry-run"], obj=app)
    assert done.value.code == 1  # the command's click Exit(1), once dropped by main
