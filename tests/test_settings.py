from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from crusader_mail.cli import cli
from crusader_mail.errors import ConfigError
from crusader_mail.settings import load_settings
from tests.support.entry import run_main


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
    with pytest.raises(ConfigError, match=r"unknown setting 'feedz' in crusader-mail\.toml; "):
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
    rows = {row["key"]: row for row in json.loads(result.stdout)["settings"]}
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


# --- what the editor sees: the real command -----------------------------------------------------


def check(*args: str, env: dict[str, str] | None = None) -> Result:
    """``crusader-mail config check ARGS`` in the current folder (``clean_env``)."""
    return CliRunner().invoke(cli, ["config", "check", *args], env=env, catch_exceptions=False)


def check_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    """The console entry point (its exit code and one-line errors), stdout and stderr."""
    ran = run_main("config", "check", *args)
    return ran.code, ran.stdout, ran.stderr


@pytest.mark.parametrize(
    ("toml", "env", "expected"),
    [
        (
            '[newsletter]\nfrom_email = "not an email"\n',
            {},
            "newsletter.from_email (from crusader-mail.toml): 'not an email' is not an email "
            "address (An email address must have an @-sign.)",
        ),
        (
            '[newsletter]\nsite_url = "blog.example.com"\n',
            {},
            "newsletter.site_url (from crusader-mail.toml): 'blog.example.com' is not a whole "
            "URL: write it with its scheme, like https://blog.example.com",
        ),
        (
            '[newsletter]\nunsubscribe_url = "http://mail.example.com/unsubscribe"\n',
            {},
            "newsletter.unsubscribe_url (from crusader-mail.toml): "
            "'http://mail.example.com/unsubscribe' must be https",
        ),
        (
            "feeds = []\n",
            {"CRUSADER_MAIL_NEWSLETTER__CONFIRM_URL": "mail.example.com/confirm"},
            "newsletter.confirm_url (from env CRUSADER_MAIL_NEWSLETTER__CONFIRM_URL): "
            "'mail.example.com/confirm' is not a whole URL",
        ),
        (
            "feeds = []\n",
            {"CRUSADER_MAIL_SECRET_KEY": "abc"},
            "secret_key (from env CRUSADER_MAIL_SECRET_KEY): too short: CRUSADER_MAIL_SECRET_KEY "
            "needs at least 16 characters",
        ),
        (
            '[compose]\nsubject = "{{ posts[0].title }"\n',
            {},
            "compose.subject (from crusader-mail.toml): not a Jinja template: unexpected '}'",
        ),
        (
            "[cadence]\nmin_posts = 3\nmax_posts = 2\n",
            {},
            "cadence (from crusader-mail.toml): max_posts (2) is below min_posts (3)",
        ),
        (
            '[sendgrid]\napi_url = "http://api.sendgrid.com"\n',
            {},
            "sendgrid.api_url (from crusader-mail.toml): 'http://api.sendgrid.com' must be https",
        ),
        (
            'feeds = ["htps://blog.example.com/feed"]\n',
            {},
            "feeds (from crusader-mail.toml): feed 1: 'htps://blog.example.com/feed' is not an "
            "http(s) URL",
        ),
        (
            '[imap]\nhost = "imap.example.com"\n',
            {},
            "imap (from crusader-mail.toml): imap.host is set without imap.user",
        ),
    ],
)
def test_config_check_catches_at_load_what_a_send_would_fail_on(
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    toml: str,
    env: dict[str, str],
    expected: str,
) -> None:
    write_config(clean_env, toml)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, out, err = check_main(monkeypatch)
    assert code == 2
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith(f"crusader-mail: error: {expected}")
    assert "abc" not in line or "SECRET" not in expected  # a secret's value is never shown


def test_what_was_fine_before_still_loads(clean_env: Path) -> None:
    """The bundled example and loopback URLs (a trial on this machine) are valid."""
    example = Path(__file__).resolve().parent.parent / "crusader-mail.toml"
    write_config(clean_env, example.read_text(encoding="utf-8"))
    (clean_env / "examples/biz-crusader").mkdir(parents=True)
    assert load_settings().settings.newsletter.from_email == "news@bizcrusader.example"
    write_config(
        clean_env,
        '[newsletter]\nunsubscribe_url = "http://127.0.0.1:8025/unsubscribe"\n'
        '[sendgrid]\napi_url = "http://127.0.0.1:9"\n',
    )
    assert (
        load_settings().settings.newsletter.unsubscribe_url == "http://127.0.0.1:8025/unsubscribe"
    )


def test_a_typo_in_the_toml_names_the_nearest_key(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(clean_env, '[newsletter]\nfrom_emial = "news@example.com"\n')
    code, out, err = check_main(monkeypatch)
    assert (code, out) == (2, "")
    assert err == (
        "crusader-mail: error: unknown setting 'from_emial' in crusader-mail.toml [newsletter]; "
        "did you mean 'from_email'?\n"
    )
    write_config(clean_env, '[sendgird]\nsandbox_mode = true\n[sendgrid]\nstate_dir = "s"\n')
    code, _, err = check_main(monkeypatch)
    assert code == 2
    assert "unknown setting 'sendgird' in crusader-mail.toml; did you mean 'sendgrid'?" in err
    assert (
        "unknown setting 'state_dir' in crusader-mail.toml [sendgrid]; 'state_dir' is a "
        "top-level setting: move it above the first [section]"
    ) in err
    write_config(clean_env, 'api_url = "https://api.sendgrid.com"\n')
    code, _, err = check_main(monkeypatch)
    assert (
        "unknown setting 'api_url' in crusader-mail.toml; did you mean 'api_url' in [sendgrid]?"
        in err
    )


def test_unknown_environment_and_dotenv_names_warn_with_the_nearest(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(clean_env, "feeds = []\n")
    (clean_env / ".env").write_text(
        "CRUSADER_MAIL_SECRETKEY=0123456789abcdef0123\nOTHER_TOOL_TOKEN=x\n", encoding="utf-8"
    )
    monkeypatch.setenv("CRUSADER_MAIL_IMAP_PASSWORD", "pw")  # one underscore: not a section
    monkeypatch.setenv("CRUSADER_MAIL_FETCH__TIMOUT", "5")
    monkeypatch.setenv("CRUSADER_MAIL_SANDBOX_MODE", "true")
    result = check("--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # stdout holds the JSON document and nothing else
    env_file = clean_env / ".env"
    expected = [
        "unknown setting CRUSADER_MAIL_FETCH__TIMOUT in the environment, ignored; did you mean "
        "CRUSADER_MAIL_FETCH__TIMEOUT?",
        "unknown setting CRUSADER_MAIL_IMAP_PASSWORD in the environment, ignored; did you mean "
        "CRUSADER_MAIL_IMAP__PASSWORD?",
        "unknown setting CRUSADER_MAIL_SANDBOX_MODE in the environment, ignored; did you mean "
        "CRUSADER_MAIL_SENDGRID__SANDBOX_MODE?",
        f"unknown setting CRUSADER_MAIL_SECRETKEY in {env_file}, ignored; did you mean "
        "CRUSADER_MAIL_SECRET_KEY?",
    ]
    assert data["warnings"][:4] == expected
    for line in expected:
        assert f"crusader-mail: warning: {line}\n" in result.stderr
    assert "OTHER_TOOL" not in result.stderr  # other tools' variables are none of our business
    rows = {row["key"]: row for row in data["settings"]}
    assert rows["fetch.timeout"] == {"key": "fetch.timeout", "value": 30.0, "source": "default"}
    assert rows["imap.password"]["value"] is None


def test_a_list_variable_that_is_not_json_is_named(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(clean_env, "feeds = []\n")
    monkeypatch.setenv("CRUSADER_MAIL_FEEDS", "https://blog.example.com/feed")
    code, out, err = check_main(monkeypatch)
    assert (code, out) == (2, "")
    assert err == (
        "crusader-mail: error: CRUSADER_MAIL_FEEDS in the environment is not valid JSON "
        "(Expecting value); lists and sections are written as JSON there, e.g. "
        """CRUSADER_MAIL_FEEDS='["https://blog.example.com/feed"]'\n"""
    )
    monkeypatch.delenv("CRUSADER_MAIL_FEEDS")
    (clean_env / ".env").write_text('CRUSADER_MAIL_FETCH__ALLOW_HOSTS=["intranet"\n')
    code, _, err = check_main(monkeypatch)
    assert code == 2
    assert err.startswith(
        f"crusader-mail: error: CRUSADER_MAIL_FETCH__ALLOW_HOSTS in {clean_env / '.env'} is not "
        "valid JSON"
    )


def test_config_check_json_is_typed_and_masks_secrets(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(
        clean_env,
        'feeds = ["https://blog.example.com/feed"]\n[fetch]\nallow_hosts = ["10.1.2.0/24"]\n'
        "[sendgrid]\nsandbox_mode = true\nbatch_size = 500\n",
    )
    monkeypatch.setenv("CRUSADER_MAIL_SECRET_KEY", "a-secret-value-that-is-long")
    result = check("--json")
    assert result.exit_code == 0, result.output
    rows = {row["key"]: row["value"] for row in json.loads(result.stdout)["settings"]}
    assert rows["sendgrid.batch_size"] == 500
    assert rows["sendgrid.timeout"] == 30.0
    assert rows["sendgrid.sandbox_mode"] is True
    assert rows["compose.full_content"] is False
    assert rows["feeds"] == ["https://blog.example.com/feed"]
    assert rows["fetch.allow_hosts"] == ["10.1.2.0/24"]
    assert rows["sendgrid.asm_group_id"] is None
    assert rows["secret_key"] == "**********"
    assert rows["state_dir"] == str(clean_env / "state")
    assert "sendgrid_api_key" not in rows
    assert "a-secret-value" not in result.output
    table = check()
    assert table.exit_code == 0
    assert "true" in table.stdout
    assert "settings are valid" in table.stdout
    assert (
        "crusader-mail: note: a real send needs more: sendgrid.api_key is not set" in table.stderr
    )


def test_prefixed_key_in_dotenv_beats_the_conventional_one_in_the_environment(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(clean_env, "feeds = []\n")
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.environment")
    (clean_env / ".env").write_text("CRUSADER_MAIL_SENDGRID__API_KEY=SG.dotenv-prefixed\n")
    loaded = load_settings()
    assert loaded.settings.require_api_key() == "SG.dotenv-prefixed"
    assert loaded.sources["sendgrid.api_key"] == str(clean_env / ".env")
    (clean_env / ".env").write_text("SENDGRID_API_KEY=SG.dotenv\n")
    loaded = load_settings()
    assert loaded.settings.require_api_key() == "SG.environment"  # the environment first
    assert loaded.sources["sendgrid.api_key"] == "SENDGRID_API_KEY"
    monkeypatch.delenv("SENDGRID_API_KEY")
    loaded = load_settings()
    assert loaded.settings.require_api_key() == "SG.dotenv"
    assert loaded.sources["sendgrid.api_key"] == f"SENDGRID_API_KEY in {clean_env / '.env'}"


def test_the_conventional_key_in_the_toml_is_refused_too(clean_env: Path) -> None:
    write_config(clean_env, 'SENDGRID_API_KEY = "SG.committed-by-mistake"\n')
    with pytest.raises(ConfigError, match=r"sendgrid\.api_key is a secret") as caught:
        load_settings()
    assert "SG.committed" not in str(caught.value)
