"""The composer: templates, subject/preheader, placeholders, premailer once, errors, size."""

from __future__ import annotations

import shutil
from pathlib import Path

import premailer
import pytest

from crusader_mail.compose.composer import Composer, fill_placeholders, inline_css
from crusader_mail.compose.views import WORD_JOINER
from crusader_mail.delivery.links import clean_name
from crusader_mail.errors import ComposeError, GuardError, TemplateError
from crusader_mail.models import Placeholder
from tests.support.golden import NOW, TEMPLATES, golden_posts, golden_settings, make_post


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    shutil.copytree(TEMPLATES, folder)
    return folder


class CountingInliner:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, html: str) -> str:
        self.calls += 1
        return inline_css(html)


def test_issue_shows_everything_a_reader_needs() -> None:
    posts, related = golden_posts()
    issue = Composer(golden_settings()).compose(posts, related, "issue-1", NOW)
    html = issue.html
    assert issue.subject == "Five questions to ask before you cut your prices and 1 more"
    assert issue.preheader.startswith("Discounts feel like the fastest way")
    assert 'href="https://bizcrusader.example"' in html
    assert ">Biz Crusader</a>" in html
    assert "12 Market Street, Springfield" in html
    assert '<a class="unsubscribe" href="[[unsubscribe_url]]"' in html
    assert "Related posts" in html
    assert "word54 […]" in html
    assert html.count(">Read more<span") == 4  # two posts, two related
    assert 'class="preheader"' in html
    assert "display:none" in html
    assert "A follow-up email that &lt;actually&gt; gets answered" in html  # autoescaped
    assert "@media only screen and (max-width: 620px)" in html  # kept in <style>
    assert "width: 100% !important" in html
    assert html.startswith("<!DOCTYPE html>")
    assert "<script" not in html.lower()
    assert 'width="552" alt="Five questions' in html  # lead image: width and alt
    assert issue.post_ids == tuple(p.id for p in posts)
    assert issue.related_ids == tuple(p.id for p in related)
    assert issue.placeholders == (Placeholder.UNSUBSCRIBE_URL, Placeholder.EMAIL)
    assert "style=" in html
    assert "font-family:Helvetica, Arial, sans-serif" in html


def test_one_post_subject_has_no_suffix_and_settings_templates_apply() -> None:
    post = make_post(1, "Only one")
    issue = Composer(golden_settings()).compose([post], [], "i", NOW)
    assert issue.subject == "Only one"
    custom = golden_settings(
        subject="{{ newsletter.name }}: {{ posts|length }} new", preheader="Hi"
    )
    issue = Composer(custom).compose([post, make_post(2)], [], "i", NOW)
    assert (issue.subject, issue.preheader) == ("Biz Crusader: 2 new", "Hi")
    assert "Related posts" not in issue.html  # no related block without related posts


def test_excerpt_or_full_content_by_setting() -> None:
    body = "<p>First paragraph.</p><p>Second paragraph with <strong>detail</strong>.</p>"
    post = make_post(1, "Full or not", content=body)
    short = Composer(golden_settings()).compose([post], [], "i", NOW)
    assert "<strong" not in short.html
    assert "First paragraph. Second paragraph" in short.html
    full = Composer(golden_settings(full_content=True)).compose([post], [], "i", NOW)
    assert "<strong>detail</strong>" in full.html
    assert "First paragraph.\n\nSecond paragraph with detail." in full.text


def test_text_version_is_wrapped_with_urls_on_their_own_lines() -> None:
    posts, related = golden_posts()
    issue = Composer(golden_settings(full_content=True)).compose(posts, related, "i", NOW)
    for line in issue.text.splitlines():
        if "://" in line or "[[unsubscribe_url]]" in line:  # alone, or after a "[1]" label
            assert line.split()[-1].startswith(("https://", "[["))
            assert len(line.split()) <= 2
        else:
            assert len(line) <= 72, line
    assert "\nhttps://bizcrusader.example/p/1/\n" in issue.text
    assert "\n[[unsubscribe_url]]\n" in issue.text
    assert "these five questions [1]" in issue.text
    assert "[1] https://bizcrusader.example/p/7/" in issue.text
    assert "- Ask about the cost of doing nothing." in issue.text
    assert "> Price is what you pay" in issue.text


def test_an_inline_unsubscribe_link_still_gets_a_line_of_its_own(templates: Path) -> None:
    (templates / "parts" / "footer.txt").write_text(
        "You receive this because {{ email }} subscribed; leave whenever you like with your own"
        " link {{ unsubscribe_url }} and we stop at once.\n"
    )
    issue = Composer(golden_settings(templates)).compose([make_post(1)], [], "i", NOW)
    assert "\n[[unsubscribe_url]]\n" in issue.text
    assert "You receive this because [[email]] subscribed;" in issue.text


def test_a_placeholder_typed_into_a_template_stays_live(templates: Path) -> None:
    footer = templates / "parts" / "footer.html"
    footer.write_text(footer.read_text().replace("{{ unsubscribe_url }}", "[[unsubscribe_url]]"))
    (templates / "parts" / "footer.txt").write_text("Hi [[name]], leave: [[unsubscribe_url]]\n")
    issue = Composer(golden_settings(templates)).compose([make_post(1)], [], "i", NOW)
    assert '<a class="unsubscribe" href="[[unsubscribe_url]]"' in issue.html
    assert "Hi [[name]], leave:\n[[unsubscribe_url]]\n" in issue.text


def test_placeholders_survive_and_fill_by_plain_substitution() -> None:
    posts, related = golden_posts()
    issue = Composer(golden_settings()).compose(posts, related, "i", NOW)
    values = {
        Placeholder.UNSUBSCRIBE_URL: "https://x.example/u?t=a&b=c",
        Placeholder.EMAIL: "o'hara<x>@example.com",
        Placeholder.NAME: "Jo",
    }
    html = fill_placeholders(issue.html, values, html=True)
    assert 'href="https://x.example/u?t=a&amp;b=c"' in html
    assert "o&#x27;hara&lt;x&gt;@example.com" in html
    text = fill_placeholders(issue.text, values)
    assert "\nhttps://x.example/u?t=a&b=c\n" in text
    assert not any(p.value in text for p in Placeholder)
    assert clean_name('Eve <script>"x"\n') == "Eve scriptx"


def test_feed_text_cannot_forge_placeholders_or_template_syntax() -> None:
    hostile = make_post(
        1,
        "Use {{ config }} and [[email]]",
        content="<p>Show {% raw %} and [[unsubscribe_url]] and {# x #}</p>",
    )
    issue = Composer(golden_settings(full_content=True)).compose([hostile], [], "i", NOW)
    assert f"[{WORD_JOINER}[unsubscribe_url]]" in issue.html
    assert f"{{{WORD_JOINER}{{ config }}}}" in issue.html
    assert issue.html.count("[[unsubscribe_url]]") == 1  # only the footer's own link
    assert "[[email]]" not in issue.subject


def test_premailer_runs_once_per_issue() -> None:
    counter = CountingInliner()
    posts, related = golden_posts()
    issue = Composer(golden_settings(), inliner=counter).compose(posts, related, "i", NOW)
    assert counter.calls == 1
    for n in range(50):  # filling in readers never inlines again
        fill_placeholders(issue.html, {Placeholder.EMAIL: f"r{n}@example.com"}, html=True)
    assert counter.calls == 1


def test_default_inliner_calls_premailer_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = premailer.Premailer.transform

    def counting(self: premailer.Premailer, *args: object, **kwargs: object) -> str:
        calls.append(1)
        return original(self, *args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(premailer.Premailer, "transform", counting)
    posts, related = golden_posts()
    Composer(golden_settings()).compose(posts, related, "i", NOW)
    assert len(calls) == 1


def test_undefined_variable_names_template_and_line(templates: Path) -> None:
    footer = templates / "parts" / "footer.html"
    lines = footer.read_text().splitlines()
    after = next(i for i, line in enumerate(lines) if line.endswith("-#}")) + 1  # the comment
    lines.insert(after, "<p>{{ newsletter.nmae }}</p>")
    footer.write_text("\n".join(lines) + "\n")
    with pytest.raises(TemplateError, match=rf"parts/footer\.html:{after + 1}: .*nmae"):
        Composer(golden_settings(templates)).compose([make_post(1)], [], "i", NOW)


def test_syntax_error_names_template_and_line(templates: Path) -> None:
    (templates / "parts" / "related.html").write_text("ok\n{% if %}\n")
    posts, related = golden_posts()
    with pytest.raises(TemplateError, match=r"parts/related\.html:2: "):
        Composer(golden_settings(templates)).compose(posts, related, "i", NOW)


def test_missing_template_and_bad_subject_setting(templates: Path) -> None:
    (templates / "newsletter.txt").unlink()
    with pytest.raises(TemplateError, match=r"'newsletter\.txt' not found"):
        Composer(golden_settings(templates)).compose([make_post(1)], [], "i", NOW)
    with pytest.raises(TemplateError, match=r"setting compose\.subject: .*nope"):
        Composer(golden_settings(subject="{{ nope }}")).compose([make_post(1)], [], "i", NOW)
    with pytest.raises(ComposeError, match="no posts"):
        Composer(golden_settings()).compose([], [], "i", NOW)


def test_over_size_switches_long_posts_to_excerpts_with_a_note() -> None:
    long_body = "".join(f"<p>Paragraph {i} " + "words " * 60 + "</p>" for i in range(150))
    posts = [make_post(1, "Long one", content=long_body), make_post(2, "Short one")]
    counter = CountingInliner()
    settings = golden_settings(full_content=True, max_html_bytes=40_000)
    issue = Composer(settings, inliner=counter).compose(posts, [], "i", NOW)
    assert issue.html_bytes < 40_000
    assert "Paragraph 149" not in issue.html
    assert "1 long post is shortened in this email" in issue.html
    assert "shortened in this email" in issue.text
    assert issue.notes == (
        "switched 1 long post(s) to excerpts (HTML over 39 KB, which Gmail clips)",
    )
    assert counter.calls == 2  # one re-render for the whole issue, still never per reader


def test_still_over_size_is_a_guard_error() -> None:
    with pytest.raises(GuardError, match=r"over compose\.max_html_bytes"):
        Composer(golden_settings(max_html_bytes=2_000)).compose([make_post(1)], [], "i", NOW)


def test_right_to_left_posts_get_dir_rtl() -> None:
    urdu = make_post(1, "پاکستان میں انتخابات", content="<p>یہ ایک خبر ہے</p>")
    issue = Composer(golden_settings()).compose([urdu], [], "i", NOW)
    assert 'class="post" dir="rtl"' in issue.html
