"""Images, audio and video on real feeds from ../shared/corpus (read in place, never copied):
Blogger's shared 72 px thumbnail, FeedBurner and Medium pixels, podcasts, YouTube embeds and
``<video>`` players (see ../shared/corpus/SOURCES.md for where each file comes from)."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crusader_mail.compose.composer import Composer
from crusader_mail.feeds.parse import parse_feed
from crusader_mail.models import Post, RenderedIssue
from tests.support.golden import NOW, golden_settings

pytestmark = [pytest.mark.corpus, pytest.mark.timeout(120)]
SEEN = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
IMG = re.compile(r"<img\b[^>]*>")
SRC = re.compile(r'\ssrc="([^"]*)"')
LEAD = re.compile(r'<img class="lead-image"[^>]*>')


def read(corpus: Path, name: str) -> list[Post]:
    path = corpus / "feeds" / name
    return parse_feed(str(path), path.read_bytes(), {}, "", SEEN, 10_000_000).posts


def compose(posts: list[Post], *, full: bool = False) -> RenderedIssue:
    settings = golden_settings(full_content=full, max_html_bytes=50 * 1024 * 1024)
    return Composer(settings).compose(posts, [], "2026-11-23-corpus", NOW)


def first_content_image(post: Post) -> str | None:
    match = SRC.search(" ".join(IMG.findall(post.content_html)))
    return match.group(1) if match else None


def test_blogger_posts_lead_with_their_own_photo(corpus: Path) -> None:
    """Quiltville (Blogger): every entry's media:thumbnail is the same 72x72 signature."""
    posts = read(corpus, "rss2email_rss2email__quiltville_feed.atom")
    assert len(posts) == 25
    leads = [post.image.url if post.image else None for post in posts]
    assert None not in leads
    assert len(set(leads)) == 25  # each post its own picture
    for post in posts:
        assert post.image is not None
        assert "s72-c" not in post.image.url
        assert post.image.url == first_content_image(post)
        assert post.image.width is not None
        assert post.image.width >= 300
    issue = compose(posts[:3])
    for tag in LEAD.findall(issue.html):
        assert 'width="552"' in tag  # 640 px photos fill the column
        assert "max-width:100%" in tag
    assert "s72-c" not in issue.html
    assert "bonniesignature" not in issue.html


def test_blogger_via_feedburner_pixels_and_icons(corpus: Path) -> None:
    """Google Testing Blog and Google Ads Developer Blog: FeedBurner pixels and flare in every
    entry, 40x40 icons, s72-c thumbnails."""
    testing = read(corpus, "rbren_rss-parser__many-links.rss")
    ads = read(corpus, "rbren_rss-parser__feedburner.atom")
    for post in (*testing, *ads):
        assert "feedburner.com" not in post.content_html
        assert "feedburner.com" not in post.summary_html
        if post.image is not None:
            assert "feedburner" not in post.image.url
            assert "s72-c" not in post.image.url
            assert post.image.url == first_content_image(post)
    assert all(post.image is None for post in ads)  # only 40x40 icons and pixels
    assert sum(post.image is not None for post in testing) >= 7  # the posts with photos
    issue = compose(testing[:10], full=True)
    assert "feedburner.com/~" not in issue.html
    assert "feedburner.com/~" not in issue.text
    assert not re.search(r'<img[^>]*\s(width|height)="1"', issue.html)


def test_tracking_pixels_from_medium_and_wordpress_com(corpus: Path) -> None:
    medium = read(corpus, "rbren_rss-parser__content-encoded.rss")
    techcrunch = read(corpus, "feedjira_feedjira__TechCrunch.xml")
    assert all("/_/stat" not in post.content_html for post in medium)
    for post in techcrunch:
        assert "feedburner.com/~" not in post.content_html
        if post.image is not None:  # neither the 150 px crops, the avatars nor 120 px stills
            assert not re.search(r"\?w=1\d\d$|gravatar|/vi/.*/\d\.jpg", post.image.url)


def test_podcast_episodes_become_listen_cards(corpus: Path) -> None:
    bombcast = read(corpus, "rbren_rss-parser__giantbomb-podcast.rss")
    assert len(bombcast) == 730
    for post in bombcast:
        (episode,) = post.media
        assert episode.kind == "audio"
        assert episode.url.endswith(".mp3")
        assert episode.length
        assert episode.thumbnail
    durations = [post.media[0].duration for post in bombcast]
    assert sum(d is None for d in durations) == 34  # the episodes whose duration is "0"
    art = Counter(post.media[0].thumbnail.url for post in bombcast if post.media[0].thumbnail)
    assert len(art) > 700  # each episode its own art
    issue = compose(bombcast[:3])
    assert issue.html.count(">Listen: Giant Bombcast") == 3
    assert "2\u00a0h\u00a055\u00a0min · MP3 · 105\u00a0MB" in issue.html  # 603: 10475 s
    assert (
        "Listen: Giant Bombcast 603: Call of Tuesday (2\u00a0h\u00a055\u00a0min · MP3 · "
        "105\u00a0MB)\nhttps://dts.podtrac.com/redirect.mp3/www.giantbomb.com/podcasts/"
    ) in issue.text
    atp = read(corpus, "Ranchero-Software_RSParser__atp.rss")
    assert all(len(post.media) == 1 and post.media[0].kind == "audio" for post in atp)
    assert atp[0].media[0].duration == 6849  # 01:54:09
    assert ">1\u00a0h\u00a054\u00a0min · MP3 · 55\u00a0MB</p>" in compose(atp[:1]).html


def test_embedded_youtube_becomes_a_linked_still(corpus: Path) -> None:
    posts = read(corpus, "Ranchero-Software_RSParser__dcrainmaker.xml")
    videos = [post for post in posts if post.media]
    assert len(videos) >= 3
    post = videos[0]
    video = post.media[0]
    assert video.url.startswith("https://www.youtube.com/watch?v=")
    video_id = video.url.rsplit("=", 1)[1]
    still = f"https://i.ytimg.com/vi/{video_id}/hqdefault.jpg"
    full = compose([post], full=True).html
    assert re.search(
        rf'class="media-card" href="{re.escape(video.url)}"[^>]*><img src="{still}"', full
    )
    assert "<iframe" not in full
    excerpt = compose([post]).html
    assert (
        f'<a href="{video.url}"><img class="media-still-image" src="{still}" width="480"' in excerpt
    )


def test_video_players_leak_no_fallback(corpus: Path) -> None:
    natasha = read(corpus, "Ranchero-Software_RSParser__natasha.xml")
    (post,) = [p for p in natasha if "WatchOSPaging" in p.content_html]
    assert (
        ">https://www.natashatherobot.com/wp-content/uploads/WatchOSPaging.mp4"
        not in post.content_html
    )
    assert "Watch the video</a>" in post.content_html
    (video,) = post.media  # the enclosure and the player are one file
    assert video.url == "https://www.natashatherobot.com/wp-content/uploads/WatchOSPaging.mp4"
    full = compose([post], full=True)
    assert full.html.count("WatchOSPaging.mp4") == 1  # the card in the post, no second one
    tumblr = read(corpus, "rss2email_rss2email__tumblr_feed.rss")
    (clip,) = [p for p in tumblr if p.media]
    assert clip.media[0].thumbnail is not None  # the poster
    assert "<video" not in clip.content_html
