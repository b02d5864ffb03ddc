"""`crusader-mail preview`: files, --json, --as, --posts/--post, no state change, --serve live.

The command calls ``pipeline.plan_preview``; most tests replace it (``load_planner``) with a
planner that composes fixed posts with the real composer and templates. The last tests run
the real command in a subprocess on the pipeline's real stages.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from crusader_mail.cli import cli
from crusader_mail.cli import preview as preview_cli
from crusader_mail.cli.context import AppContext
from crusader_mail.clock import Clock, FixedClock
from crusader_mail.compose.composer import Composer
from crusader_mail.errors import TemplateError
from crusader_mail.models import Post, RenderedIssue
from crusader_mail.settings import LoadedSettings, Settings
from crusader_mail.web import preview as web_preview
from tests.support.golden import (
    NOW,
    REPO,
    TEMPLATES,
    golden_posts,
    golden_settings,
    served_settings,
)

DEMO_LIST = Path(__file__).resolve().parent.parent / "subscribers" / "subscribers.csv"


@dataclass
class FakePlan:
    issue: RenderedIssue
    posts: list[Post]
    related: list[Post]


@dataclass
class FakePlanner:
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(
        self,
        settings: Settings,
        clock: Clock,
        *,
        posts: int | None = None,
        post_url: str | None = None,
    ) -> FakePlan:
        self.calls.append({"posts": posts, "post_url": post_url})
        shown, related = golden_posts()
        issue = Composer(settings).compose(shown, related, "2026-11-23-prev0000", clock.now())
        return FakePlan(issue=issue, posts=shown, related=related)


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[AppContext, FakePlanner]:
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    settings = golden_settings(templates).model_copy(
        update={
            "preview_dir": tmp_path / "preview",
            "state_dir": tmp_path / "state",
            "subscribers_dir": tmp_path / "subscribers",
        }
    )
    planner = FakePlanner()
    monkeypatch.setattr(preview_cli, "load_planner", lambda: planner)
    app = AppContext(clock=FixedClock(NOW))
    app._loaded = LoadedSettings(settings=settings, config_file=None, sources={})
    return app, planner


def invoke(app: AppContext, *args: str) -> Any:
    return CliRunner().invoke(cli, ["preview", *args], obj=app, catch_exceptions=False)


def test_writes_html_text_and_subject(setup: tuple[AppContext, FakePlanner]) -> None:
    app, planner = setup
    result = invoke(app)
    assert result.exit_code == 0, result.output
    out = app.settings.preview_dir
    html = (out / "newsletter.html").read_text()
    assert "[[unsubscribe_url]]" in html
    assert "Related posts" in html
    assert "<script" not in html
    assert (out / "newsletter.txt").read_text().startswith("Biz Crusader - 23 November 2026")
    assert (out / "subject.txt").read_text() == (
        "Five questions to ask before you cut your prices and 1 more\n"
    )
    assert "Subject:   Five questions" in result.output
    assert planner.calls == [{"posts": None, "post_url": None}]


def test_json_names_the_files(setup: tuple[AppContext, FakePlanner], tmp_path: Path) -> None:
    app, planner = setup
    result = invoke(app, "--json", "--out", str(tmp_path / "elsewhere"), "--posts", "2")
    data = json.loads(result.output)
    assert set(data) == {"subject", "html", "text", "html_bytes", "posts", "related"}
    assert data["html"] == str(tmp_path / "elsewhere" / "newsletter.html")
    assert Path(data["text"]).read_text().endswith("[[unsubscribe_url]]\n")
    assert data["html_bytes"] == len(Path(data["html"]).read_bytes())
    shown, related = golden_posts()
    assert data["posts"] == [p.id for p in shown]
    assert data["related"] == [p.id for p in related]
    assert planner.calls == [{"posts": 2, "post_url": None}]


def test_post_url_is_passed_and_posts_conflicts(setup: tuple[AppContext, FakePlanner]) -> None:
    app, planner = setup
    assert invoke(app, "--post", "https://bizcrusader.example/p/1/").exit_code == 0
    assert planner.calls[-1] == {"posts": None, "post_url": "https://bizcrusader.example/p/1/"}
    result = CliRunner().invoke(cli, ["preview", "--posts", "1", "--post", "x"], obj=app)
    assert result.exit_code == 2
    assert "cannot be used together" in result.output


def test_as_fills_reader_values_and_masks_the_address(
    setup: tuple[AppContext, FakePlanner],
) -> None:
    app, _ = setup
    result = invoke(app, "--as", "jane.doe@example.com")
    assert result.exit_code == 0
    assert "jane.doe@example.com" not in result.output
    assert "j•••@example.com" in result.output
    out = app.settings.preview_dir
    html = (out / "newsletter.html").read_text()
    assert "[[" not in html
    assert "jane.doe@example.com" in html
    assert f'href="{preview_cli.FAKE_UNSUBSCRIBE_URL}"' in html
    assert preview_cli.FAKE_UNSUBSCRIBE_URL in (out / "newsletter.txt").read_text()


def test_as_shows_sample_links_where_the_pages_are_served(
    setup: tuple[AppContext, FakePlanner],
) -> None:
    app, _ = setup
    settings = app.settings
    served = served_settings(settings.templates_dir).model_copy(
        update={
            key: getattr(settings, key) for key in ("preview_dir", "state_dir", "subscribers_dir")
        }
    )
    app._loaded = LoadedSettings(settings=served, config_file=None, sources={})
    assert invoke(app, "--as", "jane.doe@example.com").exit_code == 0
    html = (served.preview_dir / "newsletter.html").read_text()
    assert "[[" not in html
    assert f'href="{preview_cli.FAKE_PREFERENCES_URL}"' in html
    assert preview_cli.FAKE_PREFERENCES_URL in (served.preview_dir / "newsletter.txt").read_text()


def test_preview_changes_no_state(setup: tuple[AppContext, FakePlanner]) -> None:
    app, _ = setup
    settings = app.settings
    files = {
        settings.state_dir / "archive.jsonl": '{"id": "x"}\n',
        settings.state_dir / "issues.jsonl": "",
        settings.subscribers_dir / "subscribers.csv": DEMO_LIST.read_text(encoding="utf-8"),
    }
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    listing = sorted(str(p) for p in settings.state_dir.rglob("*"))
    assert invoke(app, "--as", "ada.lovelace@example.com", "--json").exit_code == 0
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == before
    assert sorted(str(p) for p in settings.state_dir.rglob("*")) == listing


def test_template_error_is_one_line_exit_1(setup: tuple[AppContext, FakePlanner]) -> None:
    app, _ = setup
    (app.settings.templates_dir / "parts" / "footer.html").write_text("{{ oops }}\n")
    result = CliRunner().invoke(cli, ["preview"], obj=app)
    assert result.exit_code == 1
    assert "footer.html:1" in str(result.exception)


# --- --serve over real HTTP ------------------------------------------------------------------


def wait_for_version(client: httpx.Client, base: str, past: str, deadline: float = 20.0) -> str:
    """Poll until the server has rendered again (bounded; never a timing assertion)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        now = client.get(base + "__version").text
        if now != past:
            return now
        time.sleep(0.05)
    raise AssertionError("the preview server did not re-render")


def test_serve_renders_again_when_a_template_changes(
    setup: tuple[AppContext, FakePlanner],
) -> None:
    app, planner = setup
    previewer = web_preview.Previewer(app.settings, app.clock, planner)
    server = web_preview.PreviewServer(
        previewer.out,
        previewer.render,
        previewer.watched,
        app.settings.templates_dir,
        port=0,
        interval=0.05,
    )
    server.render_now()
    footer = app.settings.templates_dir / "parts" / "footer.html"
    with server.running(), httpx.Client(timeout=10) as client:
        base = server.url
        assert base.startswith("http://127.0.0.1:")
        page = client.get(base)
        assert page.status_code == 200
        assert '<iframe id="issue" src="newsletter.html?v=1"' in page.text
        assert "<script>" in page.text  # live reload lives in the wrapper page only
        issue = client.get(base + "newsletter.html")
        assert issue.status_code == 200
        assert "<script" not in issue.text
        assert "Edited footer" not in issue.text
        version = client.get(base + "__version").text

        footer.write_text(
            footer.read_text().replace("Unsubscribe</a>", "Unsubscribe</a> Edited footer")
        )
        version = wait_for_version(client, base, version)
        assert "Edited footer" in client.get(base + "newsletter.html").text
        assert "Edited footer" in (previewer.out / "newsletter.html").read_text()

        footer.write_text("{% if %}\n")  # a mistake while editing: shown, serving goes on
        version = wait_for_version(client, base, version)
        assert "footer.html:1" in client.get(base).text
        assert client.get(base + "newsletter.txt").status_code == 200
    assert len(planner.calls) == 1  # template edits compose again; they do not plan again


def test_serve_without_its_page_template_is_one_line_exit_1(
    setup: tuple[AppContext, FakePlanner],
) -> None:
    app, planner = setup
    (app.settings.templates_dir / "web" / "preview.html").unlink()
    result = CliRunner().invoke(cli, ["preview", "--serve", "--port", "0"], obj=app)
    assert result.exit_code == 1
    assert isinstance(result.exception, TemplateError)
    assert "preview.html: the preview page template is missing" in str(result.exception)
    assert planner.calls == []  # refused before planning or serving anything


# --- the real command ------------------------------------------------------------------------

EXAMPLE = REPO / "crusader-mail.toml"


def _pipeline_ready() -> bool:
    try:
        import crusader_mail.pipeline  # noqa: F401
    except ImportError:
        return False
    return (REPO / "examples" / "biz-crusader" / "feed.xml").is_file()


needs_pipeline = pytest.mark.skipif(
    not _pipeline_ready(), reason="pipeline stages or the example feed are not there yet"
)


def _example_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "examples").mkdir(parents=True)
    shutil.copytree(REPO / "examples" / "biz-crusader", project / "examples" / "biz-crusader")
    shutil.copytree(TEMPLATES, project / "templates")
    shutil.copy(EXAMPLE, project / "crusader-mail.toml")
    return project


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("CRUSADER_MAIL_", "SENDGRID"))}


@needs_pipeline
def test_real_command_in_a_subprocess(tmp_path: Path) -> None:
    project = _example_project(tmp_path)
    exe = Path(sys.executable).parent / "crusader-mail"
    done = subprocess.run(
        [str(exe), "preview", "--posts", "2", "--json"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert len(data["posts"]) == 2
    assert data["html_bytes"] > 0
    assert Path(data["html"]).is_file()
    assert Path(data["html"]).parent == project / "preview"
    assert not (project / "state").exists() or not any((project / "state").iterdir())


@needs_pipeline
def test_real_serve_in_a_subprocess(tmp_path: Path) -> None:
    project = _example_project(tmp_path)
    exe = Path(sys.executable).parent / "crusader-mail"
    proc = subprocess.Popen(
        [str(exe), "preview", "--posts", "1", "--serve", "--port", "0"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        url = ""
        for line in proc.stdout:
            if line.startswith("Serving the preview on "):
                url = line.split()[4]
                break
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(timeout=10) as client:
            version = client.get(url + "__version").text
            assert "Biz Crusader" in client.get(url + "newsletter.html").text
            layout = project / "templates" / "parts" / "footer.html"
            layout.write_text(layout.read_text().replace("no questions asked", "see you again"))
            wait_for_version(client, url, version)
            assert "see you again" in client.get(url + "newsletter.html").text
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
