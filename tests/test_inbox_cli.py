"""`crusader-mail inbox process` and `crusader-mail serve` as the user runs them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from peers.sendgrid_server import SendGridServer, sendgrid_server

from crusader_mail.cli import cli, main
from crusader_mail.cli.context import AppContext
from crusader_mail.clock import FixedClock
from tests.support.inbox import FIXTURES, SECRET, write_config

__all__ = ["sendgrid_server"]


@pytest.fixture
def app(
    clean_env: Path,
    tmp_path: Path,
    clock: FixedClock,
    sendgrid_server: SendGridServer,
    monkeypatch: pytest.MonkeyPatch,
) -> AppContext:
    monkeypatch.setenv("CRUSADER_MAIL_SECRET_KEY", SECRET)
    monkeypatch.setenv("SENDGRID_API_KEY", sendgrid_server.api_key)
    return AppContext(config=write_config(tmp_path, sendgrid_server.url), clock=clock)


def test_process_paths_json(app: AppContext, sendgrid_server: SendGridServer) -> None:
    names = ["subscribe-by-address.eml", "other.eml", "dsn-hard.eml"]
    args = ["inbox", "process", "--json", *(str(FIXTURES / n) for n in names)]
    result = CliRunner().invoke(cli, args, obj=app, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["processed"] == 3
    assert [a["command"] for a in report["actions"]] == ["subscribe", "none", "bounce"]
    assert set(report["actions"][0]) == {"message_id", "command", "result"}
    assert "jane@reader.example" not in result.stdout
    assert len(sendgrid_server.to("jane@reader.example")) == 1


def test_process_json_masks_message_ids(app: AppContext, tmp_path: Path) -> None:
    """Some mailers build the Message-ID from the sender's address: shown, it is masked."""
    message = tmp_path / "reply.eml"
    message.write_bytes(
        b"From: Jane <jane.doe@reader.example>\r\nTo: news@bizcrusader.example\r\n"
        b"Subject: Loved it\r\nMessage-ID: <jane.doe.1234@reader.example>\r\n\r\nThanks!\r\n"
    )
    args = ["inbox", "process", "--json", str(message)]
    result = CliRunner().invoke(cli, args, obj=app, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [action] = json.loads(result.stdout)["actions"]
    assert action["message_id"] == "<j•••@reader.example>"
    assert "jane.doe" not in result.stdout


def test_process_table(app: AppContext) -> None:
    result = CliRunner().invoke(
        cli, ["inbox", "process", str(FIXTURES / "loop.eml")], obj=app, catch_exceptions=False
    )
    assert result.exit_code == 0
    assert "loop" in result.stdout
    assert "1 message" in result.stdout


def test_process_needs_something_to_read(app: AppContext) -> None:
    result = CliRunner().invoke(cli, ["inbox", "process"], obj=app)
    assert result.exit_code == 2
    assert "PATHS" in result.output


def test_imap_without_settings_is_one_clear_error(tmp_path: Path, app: AppContext) -> None:
    from crusader_mail.cli import main

    with pytest.raises(SystemExit) as done:
        main(["inbox", "process", "--imap"], obj=app)
    assert done.value.code == 1


def test_missing_api_key_is_a_configuration_error(
    app: AppContext, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from crusader_mail.cli import main

    monkeypatch.delenv("SENDGRID_API_KEY")
    with pytest.raises(SystemExit) as done:
        main(["inbox", "process", str(FIXTURES / "other.eml")], obj=app)
    assert done.value.code == 2
    assert "sendgrid.api_key is not set" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_serve_in_a_subprocess(
    clean_env: Path, tmp_path: Path, sendgrid_server: SendGridServer
) -> None:
    config = write_config(tmp_path, sendgrid_server.url)
    env = {
        **{
            k: v for k, v in os.environ.items() if not k.startswith(("CRUSADER_MAIL_", "SENDGRID_"))
        },
        "CRUSADER_MAIL_SECRET_KEY": SECRET,
        "SENDGRID_API_KEY": sendgrid_server.api_key,
    }
    port = free_port()
    binary = str(Path(sys.executable).parent / "crusader-mail")
    process = subprocess.Popen(
        [binary, "--config", str(config), "serve", "--same-host", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            for _ in range(200):
                try:
                    response = client.get("/unsubscribe", params={"token": "nonsense"})
                    break
                except httpx.TransportError:
                    assert process.poll() is None, "serve exited"
                    time.sleep(0.05)
            else:
                pytest.fail("serve did not answer")
        assert response.status_code == 400
        assert "Biz Crusader" in response.text
    finally:
        process.terminate()
        _, err = process.communicate(timeout=20)
    assert b"serving Biz Crusader" in err


def test_serve_refuses_a_files_store_it_cannot_share(
    app: AppContext, capsys: pytest.CaptureFixture[str]
) -> None:
    assert app.config is not None
    with pytest.raises(SystemExit) as done:
        main(["--config", str(app.config), "serve", "--port", "0"], obj=app)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("crusader-mail: error: serve: the files store keeps readers' choices")
    assert "would never see them" in err
    assert "--same-host" in err
    assert "database_url" in err
