from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from crusader_mail.cli import cli
from crusader_mail.errors import ConfigError
from crusader_mail.settings import load_settings


def write_config(folder: Path, text: str) -> Path:
    path = folder / "crusader-mail.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_toml_then_dotenv_then_environment(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(clean_env, 'feeds = ["feed.xml"]\n[fetch]\ntimeout = 5\nmax_bytes = 100\n')
    (clean_env / ".env").write_text("CRUSADER_MAIL_FETCH__TIMEOUT=7\nSENDGRID_API_KEY=SG.dotenv\n")
    monkeypatch.setenv("CRUSADER_MAIL_FETCH__MAX_BYTES", "200")
    loaded = load_settings()
    s = loaded.settings
    assert s.fetch.timeout == 7
    assert s.fetch.max_bytes == 200
    assert s.feeds == [str(clean_env / "feed.xml")]
    assert s.state_dir == clean_env / "state"
    assert s.sendgrid.api_key is not None
    assert s.sendgrid.api_key.get_secret_value() == "SG.dotenv"
    assert loaded.sources["fetch.timeout"] == str(clean_env / ".env")
    assert loaded.sources["fetch.max_bytes"] == "env CRUSADER_MAIL_FETCH__MAX_BYTES"
    assert loaded.sources["feeds"] == "crusader-mail.toml"


def test_feeds_as_json_list_from_environment(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRUSADER_MAIL_FEEDS", '["https://a.example/feed", "https://b.example/rss"]')
    assert load_settings().settings.feeds == ["https://a.example/feed", "https://b.example/rss"]


def test_prefixed_key_beats_conventional_sendgrid_key(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.conventional")
    assert load_settings().settings.require_api_key() == "SG.conventional"
    monkeypatch.setenv("CRUSADER_MAIL_SENDGRID__API_KEY", "SG.prefixed")
    assert load_settings().settings.require_api_key() == "SG.prefixed"


def test_bad_value_names_key_source_and_expectation(clean_env: Path) -> None:
    write_config(clean_env, "[sendgrid]\nbatch_size = 5000\n")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "sendgrid.batch_size" in message
    assert "crusader-mail.toml" in message
    assert "1000" in message


def test_unknown_key_is_an_error(clean_env: Path) -> None:
    write_config(clean_env, "feedz = []\n")
    with pytest.raises(ConfigError, match=r"feedz .*unknown setting"):
        load_settings()


def test_broken_toml_names_the_file(clean_env: Path) -> None:
    write_config(clean_env, "feeds = [\n")
    with pytest.raises(ConfigError, match=r"crusader-mail\.toml: not valid TOML"):
        load_settings()


def test_config_check_masks_secrets_and_exits_2_on_bad_value(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.very-secret-value")
    monkeypatch.setenv("CRUSADER_MAIL_SECRET_KEY", "another-very-secret-value")
    runner = CliRunner()
    result = runner.invoke(cli, ["config", "check", "--json"])
    assert result.exit_code == 0, result.output
    assert "very-secret" not in result.output
    rows = {row["key"]: row for row in json.loads(result.output)["settings"]}
    assert rows["sendgrid.api_key"]["value"] == "**********"
    assert rows["sendgrid.api_key"]["source"] == "SENDGRID_API_KEY"
    assert rows["secret_key"]["source"] == "env CRUSADER_MAIL_SECRET_KEY"

    monkeypatch.setenv("CRUSADER_MAIL_CADENCE__MODE", "hourly")
    from crusader_mail.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["config", "check"])
    assert exited.value.code == 2


def test_config_flag_and_environment_variable(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = clean_env / "elsewhere"
    other.mkdir()
    write_config(other, 'state_dir = "mystate"\n')
    monkeypatch.setenv("CRUSADER_MAIL_CONFIG", str(other / "crusader-mail.toml"))
    assert load_settings().settings.state_dir == other / "mystate"
    with pytest.raises(ConfigError, match="not found"):
        load_settings(clean_env / "missing.toml")
