"""Images, audio and video: the post's own lead picture, never stretched; podcast and video
posts as "Listen" and "Watch" cards; tracking pixels dropped. Over the project's own fixtures
(``tests/fixtures/feeds/blogger.xml`` and ``podcast.xml``) and small pieces of HTML."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crusader_mail.compose.composer import Composer
from crusader_mail.feeds.media import is_small
from crusader_mail.feeds.parse import parse_feed
from crusader_mail.feeds.sanitize import is_tracker, sanitize, sanitize_html
from crusader_mail.models import ArchivedPost, Image, Media, Post, RenderedIssue
from tests.support.golden import NOW, golden_settings, make_post

FIXTURES = Path(__file__).parent / "fixtures" / "feeds"
SEEN = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
BASE = "https://blog.example/posts/one/"
IMG = re.compile(r"<img\b[^>]*>")


def read(name: str, url: str = "") -> list[Post]:
    body = (FIXTURES / name).read_bytes()
    return parse_feed(name, body, {}, url, SEEN, 10_000_000).posts


def compose(posts: list[Post], *, full: bool = False) -> RenderedIssue:
    return Composer(golden_settings(full_content=full)).compose(posts, [], "2026-11-23-i", NOW)


def images(html: str) -> list[str]:
    return IMG.findall(html)


# --- the lead image ---------------------------------------------------------------------------


def test_blogger_posts_lead_with_their_own_photo_not_the_shared_thumbnail() -> None:
    spring, border, guild, quilt = read("blogger.xml")
    assert spring.image is not None
    assert border.image is not None
    assert quilt.image is not None
    assert spring.image.url == "https://1.bp.blogspot.com/-a1/AAAA/w640-h302/spring.jpg"
    assert (spring.image.width, spring.image.height) == (640, 302)
    assert border.image.url.endswith("/w400-h300/border.jpg")
    assert border.image.width == 400
    # the unsized signature opens every post: shared by all, so no post's own
    assert quilt.image.url.endswith("/s1600/quilt.jpg")
    assert quilt.image.width is None
    assert quilt.image.alt == "The finished quilt on the line"
    # a 40x40 icon and an s200 badge are all the guild post has: no lead picture at all
    assert guild.image is None


def test_lead_image_is_never_stretched_wider_than_it_is() -> None:
    issue = compose(read("blogger.xml"))
    tags = {
        tag.split('src="')[1].split('"')[0].rsplit("/", 1)[-1]: tag for tag in images(issue.html)
    }
    assert set(tags) == {"spring.jpg", "border.jpg", "quilt.jpg"}
    assert 'width="552"' in tags["spring.jpg"]  # 640 px wide: fills the column
    assert 'width="400"' in tags["border.jpg"]  # 400 px: its own width, not 552
    assert "width=" not in tags["quilt.jpg"].replace("max-width", "")  # unknown: no width
    for tag in tags.values():
        assert "max-width:100%" in tag
        assert re.search(r'alt="[^"]+"', tag)  # alt text always
    assert "width:100%" not in issue.html.replace("max-width:100%", "")
    assert "s72-c" not in issue.html
    assert "signature.png" not in issue.html


@pytest.mark.parametrize(
    ("url", "width", "height", "small"),
    [
        ("https://3.bp.blogspot.com/-x/AAAA/s72-c/signature.png", None, None, True),
        ("https://blogger.googleusercontent.com/img/b/x/s200/a.png", None, None, True),
        ("https://lh3.googleusercontent.com/abc=w250-h150-no", None, None, True),
        ("https://1.bp.blogspot.com/-x/AAAA/w640-h302/a.jpg", None, None, False),
        ("https://1.bp.blogspot.com/-x/AAAA/s1600/a.jpg", None, None, False),
        ("https://blog.files.wordpress.com/2011/11/a.png?w=150", None, None, True),
        ("https://blog.example/wp-content/uploads/a-150x150.jpg", None, None, True),
        ("https://img.youtube.com/vi/WgTz8l2vsbs/2.jpg", None, None, True),
        ("https://blog.example/a.jpg", 299, None, True),
        ("https://blog.example/a.jpg", 1200, 80, True),
        ("https://blog.example/a.jpg", 300, 228, False),
        ("https://blog.example/a.jpg", None, None, False),
        ("https://blog.example/s72-c/a.jpg", None, None, False),  # Blogger's sizes on Google only
    ],
)
def test_pictures_known_to_be_small(url: str, width: int, height: int, small: bool) -> None:
    assert is_small(Image(url=url, width=width, height=height)) is small


def test_image_sizes_from_media_rss_and_avatars_skipped() -> None:
    feed = b"""<?xml version="1.0"?><rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/">
    <channel><title>t</title><link>https://wp.example/</link><item><title>A</title>
    <link>https://wp.example/a</link>
    <media:content url="https://1.gravatar.com/avatar/abc?s=96" medium="image"/>
    <media:content url="https://wp.example/a-thumb.png?w=150" medium="image"/>
    <media:content url="https://wp.example/a.jpg" medium="image" width="1024" height="683"/>
    </item></channel></rss>"""
    (post,) = parse_feed("wp", feed, {}, "", SEEN, 10_000).posts
    assert post.image == Image(url="https://wp.example/a.jpg", width=1024, height=683)


# --- audio and video --------------------------------------------------------------------------


def test_podcast_enclosures_become_media() -> None:
    pricing, quiet, studio = read("podcast.xml", "https://calls.example/feed.xml")
    (episode,) = pricing.media  # the enclosure, its media:content and the player: one file
    assert episode == Media(
        kind="audio",
        url="https://cdn.calls.example/42.mp3",
        title="Episode 42: Pricing out loud",
        duration=3723,
        type="audio/mpeg",
        length=59_400_000,
        thumbnail=Image(url="https://calls.example/art/42.jpg"),  # the episode's itunes:image
    )
    (m4a,) = quiet.media  # no type: the extension says audio; length 0 is no size
    assert (m4a.kind, m4a.duration, m4a.length, m4a.thumbnail) == ("audio", 2710, None, None)
    assert [(m.kind, m.url) for m in studio.media] == [
        ("video", "https://cdn.calls.example/studio.mp4"),
        ("video", "https://www.youtube.com/watch?v=dQw4w9WgXcQ"),
        ("video", "https://vimeo.com/76979871"),
        ("video", "https://calls.example/clips/desk.webm"),
    ]
    assert studio.media[0].thumbnail == Image(
        url="https://calls.example/stills/studio.jpg", width=1280, height=720
    )
    assert studio.media[2].title == "Making of"  # the embed's own title
    assert studio.media[1].title == studio.title  # "YouTube video player" names nothing
    assert studio.image is None  # every picture it has belongs to a video


def test_listen_and_watch_cards_in_an_excerpt_issue() -> None:
    issue = compose(read("podcast.xml", "https://calls.example/feed.xml"))
    html, text = issue.html, issue.text
    listen = '<a href="https://cdn.calls.example/42.mp3"'
    assert f'{listen} style="color:#0b5cad; text-decoration:none">Listen: Episode 42' in html
    assert "1\u00a0h\u00a002\u00a0min · MP3 · 59\u00a0MB" in html
    assert 'src="https://calls.example/art/42.jpg" width="72" alt="Listen: Episode 42' in html
    assert ">Listen: Episode 41: The quiet client</a>" in html
    assert ">45\u00a0min · M4A</p>" in html
    assert "Listen: Episode 41: The quiet client (45\u00a0min · M4A)\n" in text
    # a video: its still, linked to it, no wider than the column
    assert re.search(
        r'<a href="https://cdn.calls.example/studio.mp4"><img class="media-still-image" '
        r'src="https://calls.example/stills/studio.jpg" width="552" alt="Watch: Behind',
        html,
    )
    assert 'href="https://www.youtube.com/watch?v=dQw4w9WgXcQ"' in html
    assert 'src="https://i.ytimg.com/vi/dQw4w9WgXcQ/hqdefault.jpg" width="480"' in html
    assert ">Watch: Behind the scenes: our studio</a>" in html
    assert "youtube.com</p>" in html  # a hosted video's card names the site
    assert "desk.webm" not in html  # at most three cards a post
    assert (
        "Listen: Episode 42: Pricing out loud (1\u00a0h\u00a002\u00a0min · MP3 · 59\u00a0MB)\n"
        "https://cdn.calls.example/42.mp3\n"
    ) in text
    assert "Watch: Behind the scenes: our studio (MP4 · 12\u00a0MB)\n" in text


def test_players_become_links_in_a_full_issue_and_never_leak_fallback_text() -> None:
    issue = compose(read("podcast.xml", "https://calls.example/feed.xml"), full=True)
    for part in (issue.html, issue.text):
        assert "does not support" not in part
        assert "cannot play" not in part
        assert "Download the clip" not in part
        assert "Watch it on YouTube" not in part
    html = issue.html
    for tag in ("<iframe", "<audio", "<video", "<source"):
        assert tag not in html
    assert 'class="media-card" href="https://cdn.calls.example/42.mp3"' in html
    assert html.count("https://cdn.calls.example/42.mp3") == 1  # the post's card, not twice
    assert re.search(
        r'class="media-card" href="https://www.youtube.com/watch\?v=dQw4w9WgXcQ"[^>]*>'
        r'<img src="https://i.ytimg.com/vi/dQw4w9WgXcQ/hqdefault.jpg" alt="" width="480" '
        r'height="360"[^>]*><br>Watch the video on YouTube</a>',
        html,
    )
    assert re.search(
        r'href="https://vimeo.com/76979871"[^>]*>Watch the video on Vimeo: Making of', html
    )
    assert 'src="https://calls.example/stills/desk.jpg"' in html  # the poster, linked
    assert ">Watch: Behind the scenes: our studio</a>" in html  # the enclosure: not in the post
    assert "Listen to the audio\n" not in issue.text
    assert "Watch the video on Vimeo: Making of [" in issue.text


def test_hosted_videos() -> None:
    cases = {
        "https://www.youtube.com/embed/dQw4w9WgXcQ": "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
        "//www.youtube.com/embed/dQw4w9WgXcQ?start=3": "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
        "https://youtu.be/dQw4w9WgXcQ": "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
        "https://player.vimeo.com/video/123?h=abc9": "https://vimeo.com/123/abc9",
    }
    for src, page in cases.items():
        (media,) = sanitize(f'<iframe src="{src}"></iframe>', BASE).media
        assert media.url == page
    for src in (
        "https://www.youtube.com/embed/short",  # not a video id
        'https://www.youtube.com/embed/dQw4w9WgXcQ"><script>alert(1)</script>',
        "https://evil.example/embed/dQw4w9WgXcQ",
        "javascript:alert(1)//youtube.com/embed/dQw4w9WgXcQ",
        "https://player.vimeo.com/video/",
    ):
        result = sanitize(f"<p>a</p><iframe src='{src}'>x</iframe><p>b</p>", BASE)
        assert result.media == ()
        assert result.html == "<p>a</p><p>b</p>"


# --- tracking pixels --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pixel",
    [
        '<img src="https://blog.example/open.gif" width="1" height="1" alt="">',
        '<img src="https://blog.example/t.png" width="0" height="0">',
        '<img src="http://feeds.feedburner.com/~r/Blog/~4/abc" height="1" width="1" alt="">',
        '<img src="http://feeds.feedburner.com/~ff/Blog?d=yIl2AUoC8zA" border="0">',
        '<img src="https://feedproxy.google.com/~r/Blog/~4/abc">',
        '<img src="http://da.feedsportal.com/r/186529795882/u/49/f/641422/c/32815/s/1.gif">',
        '<img src="https://pixel.wp.com/b.gif?v=noscript" alt="">',
        '<img src="https://stats.wordpress.com/b.gif?host=blog.example&amp;blog=1">',
        '<img src="https://us4.list-manage.com/track/open.php?u=abc&amp;id=def">',
        '<img src="https://medium.com/_/stat?event=post.clientViewed&amp;postId=1" width="1">',
        '<img src="https://feeds.feedblitz.com/~/i/123/0/blog">',
        '<img src="http://feeds.wordpress.com/1.0/comments/blog.wordpress.com/1/">',
    ],
)
def test_tracking_pixels_are_dropped(pixel: str) -> None:
    out = sanitize_html(f"<p>Text{pixel}</p><p>more</p>", BASE)
    assert out == "<p>Text</p><p>more</p>"


def test_a_link_left_empty_by_its_tracker_goes_a_link_with_text_stays() -> None:
    markup = (
        '<div><a href="http://feeds.feedburner.com/~ff/Blog?a=x">'
        '<img src="http://feeds.feedburner.com/~ff/Blog?d=y" border="0"></a> '
        '<a href="https://ok.example/">read <img src="https://medium.com/_/stat?e=1"></a></div>'
    )
    out = sanitize_html(markup, BASE)
    assert out == '<div> <a href="https://ok.example/" rel="noopener">read </a></div>'


def test_real_pictures_from_the_same_services_stay() -> None:
    for src in (
        "https://i0.wp.com/blog.example/photo.jpg",
        "https://blog.files.wordpress.com/2026/11/photo.jpg",
        "https://feeds.feedburner.com/images/logo.png",
        "https://cdn-images-1.medium.com/max/1024/photo.jpeg",
    ):
        assert not is_tracker(src)
        assert f'<img src="{src}"' in sanitize_html(f'<img src="{src}" width="640">', BASE)


def test_a_full_issue_carries_no_pixel() -> None:
    issue = compose(read("blogger.xml"), full=True)
    assert "feedburner" not in issue.html
    assert "feedburner" not in issue.text
    assert not re.search(r'(width|height)="[01]"', issue.html)


# --- stored posts -----------------------------------------------------------------------------


def test_archived_posts_without_media_fields_still_load() -> None:
    old = {  # a line of state/archive.jsonl as written before posts had media
        "id": "https://blog.example/p/1",
        "title": "Old",
        "link": "https://blog.example/p/1",
        "published": "2026-01-01T00:00:00Z",
        "updated": "2026-01-01T00:00:00Z",
        "image": {"url": "https://blog.example/a.png", "alt": ""},
        "feed": "https://blog.example/feed",
        "first_seen": "2026-01-01T00:00:00Z",
        "issue": "backlog",
    }
    post = ArchivedPost.model_validate(old)
    assert post.media == ()
    assert post.image == Image(url="https://blog.example/a.png")
    assert post.image.width is None
    issue = compose([post])
    assert 'src="https://blog.example/a.png" alt="Old"' in issue.html  # no width: not stretched
    with_media = make_post(3, media=(Media(kind="audio", url="https://x.example/a.mp3"),))
    again = ArchivedPost.model_validate_json(ArchivedPost(**dict(with_media)).model_dump_json())
    assert again.media == with_media.media
