"""The composer: new posts + related posts -> one finished newsletter (:class:`RenderedIssue`).

::

    Composer(settings).compose(posts, related, issue_id, now, note=, web=) -> RenderedIssue
    Composer(settings).welcome(posts, subject, now) -> RenderedIssue     the reader's welcome
    fill_placeholders(text, values, *, html=False) -> str
    web_page(issue, settings) -> RenderedIssue     an issue's public archive page

- One Jinja environment per :class:`Composer`, loading ``settings.templates_dir``
  (``newsletter.html`` and ``newsletter.txt`` and what they include). Autoescape for ``.html``;
  ``StrictUndefined``; a broken template raises :class:`TemplateError` naming file and line.
- Subject and preheader are Jinja strings from ``settings.compose`` (plain text, one line).
- What the templates see of a post: :func:`~.views.post_view` (:mod:`.views`). Its lead picture's ``width`` attribute is
  552 (the column) only when the picture is known to be that wide, its own width when known to
  be narrower, none when unknown (never stretched); its audio and video become "Listen" and
  "Watch" cards (at most three; none for a player the full post already shows as a link).
  Its content fits the issue (:func:`~.views.fit_content`): its headings one level down (the issue's one
  ``h1`` is the newsletter's name, a post's title is an ``h2``), and every picture wider than
  the column declared at most 552 px wide (Word-rendered Outlook takes the ``width`` attribute
  and ignores ``max-width``).
- The text part: ``newsletter.txt``, whose ``html_to_text`` filter lays a post's HTML out as text
  (:func:`crusader_mail.util.html_text.mail_text`), wrapped at 72 columns
  (:func:`crusader_mail.compose.plaintext.wrap_text`).
- CSS is inlined with premailer ONCE per issue (:func:`inline_css`; never once per reader). The
  rules it cannot inline (the phones' ``@media`` query) stay in a ``<style>`` block, made
  ``!important``; a ``<style data-premailer="ignore">`` block (dark mode) is kept as written,
  and so are comments (Outlook's ``<!--[if mso]>``). Network and external files are off;
  cssutils' log noise is silenced.
- Per-reader values stay placeholders (``[[unsubscribe_url]]``, ``[[preferences_url]]``,
  ``[[email]]``, ``[[name]]``), and the ones used are listed in ``RenderedIssue.placeholders``.
  The templates link the preferences page only when ``preferences_page`` says serve's pages
  are there (:meth:`Settings.served_page`). Only the templates make a placeholder: with the
  variables ``unsubscribe_url``, ``preferences_url``, ``email`` and ``name``, or the placeholder itself
  typed into a template (read as its variable). Text from feeds can never forge one:
  ``[[`` and Jinja's ``{{ {% {#`` get an invisible WORD JOINER (U+2060) between the two
  characters in every post field and in the ``html_to_text`` filter's result, and the issue is
  rendered with a random stand-in for each placeholder, so that after the last transformation
  (premailer, wrapping) every ``[[`` left over is made inert before the stand-ins become the
  placeholders. The guards then check that each part holds exactly as many of each placeholder
  as the templates put there.
- ``note``: the editor's note (Markdown, :mod:`crusader_mail.compose.note`) on top of the issue,
  defused like a post. ``issue_id`` gives the issue's archive page (``page_url``, with
  ``newsletter.archive_url``): "View in your browser" on top, the archive in the footer.
- ``web=True``: the issue's public archive page (:func:`web_page`): the templates see ``web``
  (no "View in your browser", an invitation to subscribe instead of the reader's footer), and
  every placeholder left is filled with :func:`neutral_values`; the guards then allow none.
- The guards (:mod:`crusader_mail.compose.guards`) run before the issue is returned: too big ->
  long posts become excerpts and the issue is rendered again with a note; still too big or
  unsafe -> :class:`GuardError`.

Placeholder values and escaping: the templates put the two URLs only in an ``href``
and ``[[email]]``/``[[name]]`` only in element text. ``fill_placeholders(html, values, html=True)``
HTML-escapes each value, which is safe in both places. SendGrid ``substitutions`` put ONE value
unescaped in text and HTML alike: the sender cleans names with
:func:`crusader_mail.delivery.links.clean_name` (no ``< > " \\``, no line breaks), addresses are
validated, and the two links are built from base32 tokens.
"""

from __future__ import annotations

import html as html_lib
import logging
import re
import secrets
import string
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2
from markupsafe import Markup
from premailer import Premailer

from crusader_mail.compose import guards
from crusader_mail.compose.note import note_html, note_text
from crusader_mail.compose.plaintext import wrap_text
from crusader_mail.compose.views import (
    WORD_JOINER,
    PostView,
    date_text,
    defuse,
    fit_content,
    post_view,
)
from crusader_mail.errors import ComposeError, GuardError, TemplateError
from crusader_mail.models import Placeholder, Post, RenderedIssue
from crusader_mail.settings import Settings
from crusader_mail.util.html_text import mail_text

HTML_TEMPLATE = "newsletter.html"
TEXT_TEMPLATE = "newsletter.txt"
WELCOME_HTML = "welcome.html"
WELCOME_TEXT = "welcome.txt"
_DOUBLE_BRACKET = re.compile(r"\[(?=\[)")

Inliner = Callable[[str], str]


def inline_css(html: str) -> str:
    """Inline the ``<style>`` rules into ``style=""`` attributes (premailer, no network); keep
    ``@media`` rules (made ``!important``), ``data-premailer="ignore"`` blocks and comments."""
    inliner = Premailer(
        html,
        base_url=None,
        disable_link_rewrites=True,
        allow_network=False,
        allow_loading_external_files=False,
        keep_style_tags=False,  # leftovers (@media) are kept in a <style> block
        strip_important=False,  # the @media rules need !important to beat inline styles
        remove_classes=False,  # the @media rules select by class
        exclude_pseudoclasses=True,
        disable_validation=True,
        disable_basic_attributes=["width", "height"],  # keep the templates' pixel widths
        cssutils_logging_level=logging.CRITICAL,
    )
    out: str = inliner.transform()
    if not out.lstrip()[:9].lower().startswith("<!doctype"):
        out = "<!DOCTYPE html>\n" + out  # lxml drops it; without it clients use quirks mode
    return out


def fill_placeholders(text: str, values: Mapping[Placeholder, str], *, html: bool = False) -> str:
    """Replace each placeholder by its value (plain substitution, as SendGrid does).

    ``html=True`` HTML-escapes the values first (for filling a rendered HTML issue)."""
    for placeholder, value in values.items():
        text = text.replace(placeholder.value, html_lib.escape(value) if html else value)
    return text


def _text_filter(markup: str) -> str:
    """The ``html_to_text`` filter: a post's HTML as text, defused (tags inside ``[<b></b>[``
    or a comment between two ``{`` vanish only here)."""
    return defuse(mail_text(markup))


_StandIns = Mapping[Placeholder, str]


def _stand_ins() -> dict[Placeholder, str]:
    """A random stand-in for each placeholder while an issue renders: letters only (no
    transformation touches them, no feed can guess them), as long as the placeholder (the text
    part wraps exactly as it will read)."""
    letters = string.ascii_letters
    return {p: "".join(secrets.choice(letters) for _ in p.value) for p in Placeholder}


def _finish(rendered: str, stand_in: _StandIns) -> tuple[str, dict[Placeholder, int]]:
    """``rendered`` after its last transformation: every ``[[`` made inert (none of them is the
    templates'), then the stand-ins become the placeholders. Also returns how many of each the
    templates put there."""
    counts = {p: rendered.count(value) for p, value in stand_in.items()}
    out = _DOUBLE_BRACKET.sub("[" + WORD_JOINER, rendered)
    for placeholder, value in stand_in.items():
        out = out.replace(value, placeholder.value)
    return out, counts


class _TemplateLoader(jinja2.FileSystemLoader):
    """Reads the templates, a placeholder typed into one (``[[email]]``) read as its variable
    (``{{ email }}``): whichever way a template writes it, it stays live."""

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        for placeholder in Placeholder:
            variable = "{{ " + placeholder.name.lower() + " }}"
            source = source.replace(placeholder.value, variable)
        return source, filename, uptodate


class Composer:
    """Renders issues from ``settings.templates_dir``; one Jinja environment for its lifetime."""

    def __init__(self, settings: Settings, *, inliner: Inliner | None = None) -> None:
        self.settings = settings
        self.templates_dir = Path(settings.templates_dir)
        self.inline = inliner or inline_css
        self.env = jinja2.Environment(
            loader=_TemplateLoader(str(self.templates_dir)),
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html", "htm"), default_for_string=False, default=False
            ),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.env.filters["html_to_text"] = _text_filter

    # -- public ----------------------------------------------------------------------------------

    def compose(
        self,
        posts: Sequence[Post],
        related: Sequence[Post],
        issue_id: str,
        now: datetime,
        *,
        note: str = "",
        web: bool = False,
        page: str | None = None,
    ) -> RenderedIssue:
        """Render the issue (posts in the order given), inline its CSS once, run the guards.

        ``note``: the editor's note (Markdown) at the top. ``web``: the issue's public archive
        page instead (:func:`web_page`). ``page``: the issue whose public page "View in your
        browser" opens (default: this one; "": none, an issue made for a group of readers)."""
        if not posts:
            raise ComposeError(f"issue {issue_id}: no posts to compose")
        full = self.settings.compose.full_content
        limit = self.settings.compose.max_html_bytes
        shortened: set[str] = set()
        marks = _stand_ins()
        related_views = [post_view(post, full=False) for post in related]
        extra = self._extra(issue_id if page is None else page, note, web)
        base = self._context(posts, related_views, issue_id, now, full, shortened, marks)
        base.update(extra)
        subject_marked = self._render_setting(
            "compose.subject", self.settings.compose.subject, base
        )
        preheader_marked = self._render_setting(
            "compose.preheader", self.settings.compose.preheader, base
        )
        if not subject_marked:
            raise ComposeError(f"issue {issue_id}: the subject (setting compose.subject) is empty")
        while True:
            context = self._context(posts, related_views, issue_id, now, full, shortened, marks)
            context.update(extra, subject=subject_marked, preheader=preheader_marked)
            html, html_counts = _finish(self.inline(self._render(HTML_TEMPLATE, context)), marks)
            over = guards.size_overshoot(html, limit)
            if over <= 0:
                break
            switched = _posts_to_shorten(context["posts"], over)
            if not switched:
                raise GuardError(
                    f"issue {issue_id}: the HTML is {guards.html_size(html)} bytes, over "
                    f"compose.max_html_bytes ({limit}; Gmail clips longer messages) even with "
                    "every post as an excerpt: fewer posts per issue (cadence.max_posts) or "
                    "smaller templates"
                )
            shortened.update(switched)
        text, text_counts = self._text(TEXT_TEMPLATE, context, marks)
        subject, subject_counts = _finish(subject_marked, marks)
        preheader, preheader_counts = _finish(preheader_marked, marks)
        notes: tuple[str, ...] = ()
        if shortened:
            notes = (
                f"switched {len(shortened)} long post(s) to excerpts "
                f"(HTML over {limit // 1024} KB, which Gmail clips)",
            )
        issue = RenderedIssue(
            issue_id=issue_id,
            subject=subject,
            preheader=preheader,
            html=html,
            text=text,
            placeholders=_used(html, text, subject),
            post_ids=tuple(post.id for post in posts),
            related_ids=tuple(post.id for post in related),
            notes=notes,
        )
        placed = {
            "subject": subject_counts,
            "preheader": preheader_counts,
            "HTML": html_counts,
            "text": text_counts,
        }
        guards.check_issue(issue, limit, placed)
        return web_page(issue, self.settings) if web else issue

    def _extra(self, page: str, note: str, web: bool) -> dict[str, Any]:
        """What the templates see besides the posts: the editor's note (``None``, or its
        ``html`` and ``text``), ``web`` (the archive page), the issue's page, the subscribe
        link, and the archive's address (``newsletter.archive_url``, "" when none)."""
        news = self.settings.newsletter
        view = None
        if note.strip():
            html = fit_content(defuse(note_html(note, news.site_url)))
            view = {
                "html": Markup(html),  # noqa: S704 - markdown-it, raw HTML off, then nh3
                "text": defuse(note_text(note)),
            }
        subscribe = self.settings.subscribe_link
        return {
            "note": view,
            "web": web,
            "page_url": (self.settings.issue_page_url(page) if page else None) or "",
            "archive_url": news.archive_url or "",
            "subscribe_url": subscribe,
            "subscribe_by_mail": subscribe.startswith("mailto:"),
        }

    def render_page(self, name: str, context: Mapping[str, Any]) -> str:
        """The template ``name`` rendered with ``context`` as it is: no CSS inlining, no
        placeholders, no guards (the archive's index page; its caller checks it)."""
        return self._render(name, context)

    def welcome(self, posts: Sequence[Post], subject: str, now: datetime) -> RenderedIssue:
        """The welcome (``welcome.html`` and ``welcome.txt``): ``posts`` as the blog's best
        (``best`` in the templates, as excerpts), CSS inlined, the reader's placeholders left
        for each reader, the guards run. The footer promises one click only for our own
        https link: SendGrid adds its link to newsletters, not to a welcome."""
        marks = _stand_ins()
        context = self._context((), [], "welcome", now, False, set(), marks)
        context.update(self._extra("welcome", "", web=False))
        context.update(
            page_url="",  # a welcome has no page in the public archive
            subject=subject,
            preheader="",
            best=[post_view(post, full=False) for post in posts],
            one_click=self.settings.leaving().one_click == "ours",
        )
        html, html_counts = _finish(self.inline(self._render(WELCOME_HTML, context)), marks)
        text, text_counts = self._text(WELCOME_TEXT, context, marks)
        subject, subject_counts = _finish(" ".join(subject.split()), marks)
        issue = RenderedIssue(
            issue_id="welcome",
            subject=subject,
            preheader="",
            html=html,
            text=text,
            placeholders=_used(html, text, subject),
            post_ids=tuple(post.id for post in posts),
            related_ids=(),
        )
        placed = {"subject": subject_counts, "HTML": html_counts, "text": text_counts}
        guards.check_issue(issue, self.settings.compose.max_html_bytes, placed)
        return issue

    # -- rendering -------------------------------------------------------------------------------

    def _context(
        self,
        posts: Sequence[Post],
        related: list[PostView],
        issue_id: str,
        now: datetime,
        full: bool,
        shortened: set[str],
        marks: _StandIns,
    ) -> dict[str, Any]:
        news = self.settings.newsletter
        return {
            "newsletter": {
                "name": news.name,
                "site_url": news.site_url,
                "postal_address": news.postal_address,
                "from_name": news.from_name or news.name,
            },
            "issue": {"id": issue_id, "date": now, "date_text": date_text(now)},
            "posts": [post_view(post, full and post.id not in shortened) for post in posts],
            "related": related,
            "shortened": len(shortened),
            "unsubscribe_url": marks[Placeholder.UNSUBSCRIBE_URL],
            "one_click": self.settings.leaving().one_click is not None,  # else a mailto
            "preferences_url": marks[Placeholder.PREFERENCES_URL],
            "preferences_page": self.settings.served_page("preferences") is not None,
            "email": marks[Placeholder.EMAIL],
            "name": marks[Placeholder.NAME],
        }

    def _text(
        self, name: str, context: Mapping[str, Any], marks: _StandIns
    ) -> tuple[str, dict[Placeholder, int]]:
        """The text part: the template rendered, wrapped (each link placeholder on its own
        line) and finished (:func:`_finish`)."""
        links = (marks[Placeholder.UNSUBSCRIBE_URL], marks[Placeholder.PREFERENCES_URL])
        return _finish(wrap_text(self._render(name, context), links=links), marks)

    def _render(self, name: str, context: Mapping[str, Any]) -> str:
        try:
            return self.env.get_template(name).render(context)
        except jinja2.TemplateNotFound as error:
            raise TemplateError(
                f"{self.templates_dir}: template {error.name!r} not found"
            ) from None
        except jinja2.TemplateSyntaxError as error:
            where = f"{error.filename or error.name}:{error.lineno}"
            raise TemplateError(f"{where}: {error.message}") from None
        except jinja2.TemplateError as error:
            where = _template_frame(error.__traceback__, self.templates_dir) or name
            raise TemplateError(f"{where}: {error.message or error}") from None

    def _render_setting(self, key: str, source: str, context: Mapping[str, Any]) -> str:
        try:
            rendered = self.env.from_string(source).render(context)
        except jinja2.TemplateError as error:
            raise TemplateError(f"setting {key}: {error.message or error}") from None
        return " ".join(rendered.split())  # one line: a header must not break


def neutral_values(settings: Settings) -> dict[Placeholder, str]:
    """What an archive page shows where an issue has a reader's own values: nobody's address, a
    greeting to no one in particular, and the way to subscribe instead of the ways to leave or
    to choose."""
    return {
        Placeholder.EMAIL: "you",
        Placeholder.NAME: "reader",
        Placeholder.UNSUBSCRIBE_URL: settings.subscribe_link,
        Placeholder.PREFERENCES_URL: settings.subscribe_link,
    }


def web_page(issue: RenderedIssue, settings: Settings) -> RenderedIssue:
    """The public archive page of ``issue`` (composed with ``web=True``): every placeholder
    filled in with :func:`neutral_values`, then checked by the guards with none allowed."""
    values = neutral_values(settings)
    page = issue.model_copy(
        update={
            "subject": fill_placeholders(issue.subject, values),
            "preheader": fill_placeholders(issue.preheader, values),
            "html": fill_placeholders(issue.html, values, html=True),
            "text": fill_placeholders(issue.text, values),
            "placeholders": (),
        }
    )
    guards.check_issue(page, settings.compose.max_html_bytes, {})
    return page


def _used(html: str, text: str, subject: str) -> tuple[Placeholder, ...]:
    """The placeholders a rendered message holds."""
    return tuple(p for p in Placeholder if p.value in html or p.value in text or p.value in subject)


def _template_frame(tb: TracebackType | None, folder: Path) -> str | None:
    """``file:line`` of the innermost template frame (Jinja rewrites tracebacks that way)."""
    found = None
    root = str(folder.resolve())
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.startswith((root, str(folder))):
            found = f"{filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found


def _posts_to_shorten(views: Sequence[PostView], overshoot: int) -> list[str]:
    """The longest full posts whose excerpts save about ``overshoot`` bytes (at least one)."""
    full = sorted((v for v in views if v.full), key=lambda v: (-len(v.content), v.id))
    chosen: list[str] = []
    saved = 0
    for view in full:
        chosen.append(view.id)
        saved += len(view.content.encode("utf-8")) - len(view.excerpt.encode("utf-8"))
        if saved >= overshoot:
            break
    return chosen
