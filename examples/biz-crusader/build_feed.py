"""Build examples/biz-crusader/feed.xml from examples/biz-crusader/posts.txt.

The committed feed.xml is this script's exact output (deterministic: no clock, no randomness).
Regenerate with:  .venv/bin/python examples/biz-crusader/build_feed.py
Check only (exit 1 when feed.xml is stale):  .venv/bin/python examples/biz-crusader/build_feed.py --check

posts.txt holds one post per block. A block starts with a line of "=====", then header lines
"key: value" (id, date "YYYY-MM-DD HH:MM" UTC, slug, title, author, categories, tags; the last
two comma-separated), a line "-----", then the body in a small markup:

    ## Heading            -> <h2>          ### Heading -> <h3>
    - item / 1. item      -> <ul> / <ol>   (every line of the block)
    > quote               -> <blockquote>  (a last line "> -- Name" becomes <cite>)
    | a | b |             -> <table>       (first row is the header)
    ![alt](file.jpg)      -> a WordPress image block (the first one is also the item's enclosure)
    other text            -> <p>
    inline: **bold**, *italic*, [text](slug-of-another-post or https://...)

The script adds what WordPress adds: curly quotes and dashes as numeric entities (wptexturize),
a 55-word excerpt ending in " [&#8230;]", the "Related Post" block chosen by shared categories and
tags, and the "appeared first on" footer for posts from July 2026 on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from email.utils import format_datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
SITE = "https://bizcrusader.example"
SITE_NAME = "Biz Crusader"
DESCRIPTION = "Practical sales advice for small-business owners: prospecting, follow-up, pricing, referrals and keeping the clients you already have."
GENERATOR = "https://wordpress.org/?v=6.4.2"
FOOTER_FROM = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
IMAGE_W, IMAGE_H = 1024, 683
MIN_WORDS, MAX_WORDS, LONG_MAX_WORDS = 350, 900, 1700


@dataclass
class Post:
    pid: int
    date: dt.datetime
    slug: str
    title: str
    author: str
    categories: list[str]
    tags: list[str]
    body: str
    html: str = ""
    excerpt: str = ""
    words: int = 0
    images: list[str] = field(default_factory=list)
    related: list[Post] = field(default_factory=list)

    @property
    def link(self) -> str:
        return f"{SITE}/{self.date:%Y}/{self.date:%m}/{self.slug}/"

    @property
    def uploads(self) -> str:
        return f"{SITE}/wp-content/uploads/{self.date:%Y}/{self.date:%m}/"


# --- wptexturize-like text handling ------------------------------------------------------------


def texturize(text: str) -> str:
    """Escape and texturize plain text the way WordPress does in feeds (numeric entities)."""
    s = text.replace("&", "&#038;").replace("<", "&lt;").replace(">", "&gt;")
    s = s.replace("...", "&#8230;")
    s = s.replace("---", "&#8212;").replace(" -- ", " &#8212; ").replace("--", "&#8211;")
    s = s.replace(" - ", " &#8211; ")
    s = re.sub(r"(?<=\w)'|'(?=\d)", "&#8217;", s)
    s = s.replace("'", "&#8216;")
    s = re.sub(r'(^|(?<=[\s(\[*])|(?<=&#8212;)|(?<=&#8211;))"', "&#8220;", s)
    s = re.sub(r"(?<=\d)x(?=\d)", "&#215;", s)
    return s.replace('"', "&#8221;")


LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
BOLD = re.compile(r"\*\*(.+?)\*\*")
ITALIC = re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])")


class Site:
    def __init__(self, posts: list[Post]) -> None:
        self.by_slug = {p.slug: p for p in posts}

    def url(self, target: str, where: str) -> str:
        if target.startswith("https://"):
            if not target.startswith(SITE):
                raise SystemExit(f"{where}: link {target} is not on {SITE}")
            return target
        if target not in self.by_slug:
            raise SystemExit(f"{where}: link to unknown post slug {target!r}")
        return self.by_slug[target].link

    def inline(self, text: str, where: str) -> str:
        out: list[str] = []
        pos = 0
        for m in LINK.finditer(text):
            out.append(self._plain(text[pos : m.start()]))
            href = html.escape(self.url(m.group(2), where))
            out.append(f'<a href="{href}">{self._plain(m.group(1))}</a>')
            pos = m.end()
        out.append(self._plain(text[pos:]))
        return "".join(out)

    @staticmethod
    def _plain(text: str) -> str:
        s = texturize(text)
        s = BOLD.sub(r"<strong>\1</strong>", s)
        return ITALIC.sub(r"<em>\1</em>", s)


# --- body markup -> WordPress block HTML --------------------------------------------------------

IMAGE = re.compile(r"^!\[([^\]]+)\]\(([\w-]+)\.jpg\)$")


def render_body(post: Post, site: Site) -> str:
    where = f"posts.txt: post {post.slug}"
    blocks = [b.strip("\n") for b in re.split(r"\n\s*\n", post.body.strip()) if b.strip()]
    parts: list[str] = []
    for block in blocks:
        lines = block.split("\n")
        first = lines[0]
        if first.startswith("### "):
            parts.append(f'<h3 class="wp-block-heading">{site.inline(first[4:], where)}</h3>')
        elif first.startswith("## "):
            parts.append(f'<h2 class="wp-block-heading">{site.inline(first[3:], where)}</h2>')
        elif all(line.startswith("- ") for line in lines):
            items = "".join(f"<li>{site.inline(line[2:], where)}</li>" for line in lines)
            parts.append(f"<ul>\n{items}\n</ul>".replace("</li><li>", "</li>\n<li>"))
        elif all(re.match(r"\d+\. ", line) for line in lines):
            items = "".join(
                f"<li>{site.inline(line.split('. ', 1)[1], where)}</li>" for line in lines
            )
            parts.append(f"<ol>\n{items}\n</ol>".replace("</li><li>", "</li>\n<li>"))
        elif all(line.startswith(">") for line in lines):
            parts.append(render_quote([line[1:].strip() for line in lines], site, where))
        elif all(line.startswith("|") for line in lines):
            parts.append(render_table(lines, site, where))
        elif m := IMAGE.match(first):
            parts.append(render_image(post, m.group(1), m.group(2), len(post.images)))
            post.images.append(f"{post.uploads}{m.group(2)}-{IMAGE_W}x{IMAGE_H}.jpg")
        else:
            text = " ".join(line.strip() for line in lines)
            parts.append(f"<p>{site.inline(text, where)}</p>")
    return "\n\n\n\n".join(parts)


def render_quote(lines: list[str], site: Site, where: str) -> str:
    cite = ""
    if lines[-1].startswith("-- "):
        cite = f"<cite>{site.inline(lines.pop()[3:], where)}</cite>"
    text = " ".join(lines)
    paras = "".join(f"<p>{site.inline(p.strip(), where)}</p>" for p in text.split(" // "))
    return f'<blockquote class="wp-block-quote">\n{paras}\n{cite}</blockquote>'


def render_table(lines: list[str], site: Site, where: str) -> str:
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    rows = [r for r in rows if not all(set(c) <= {"-", ":"} for c in r)]
    head = "".join(f"<th>{site.inline(c, where)}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{site.inline(c, where)}</td>" for c in row) + "</tr>"
        for row in rows[1:]
    )
    return (
        '<figure class="wp-block-table"><table><thead><tr>'
        f"{head}</tr></thead><tbody>{body}</tbody></table></figure>"
    )


def render_image(post: Post, alt: str, name: str, index: int) -> str:
    base = f"{post.uploads}{name}"
    attachment = post.pid + 1 + index
    srcset = (
        f"{base}-{IMAGE_W}x{IMAGE_H}.jpg {IMAGE_W}w, {base}-300x200.jpg 300w, "
        f"{base}-768x512.jpg 768w, {base}.jpg 1600w"
    )
    return (
        '<figure class="wp-block-image size-large">'
        f'<img decoding="async" width="{IMAGE_W}" height="{IMAGE_H}" '
        f'src="{base}-{IMAGE_W}x{IMAGE_H}.jpg" alt="{html.escape(alt)}" '
        f'class="wp-image-{attachment}" srcset="{srcset}" '
        f'sizes="(max-width: {IMAGE_W}px) 100vw, {IMAGE_W}px" /></figure>'
    )


def plain_words(fragment: str) -> list[str]:
    text = re.sub(r"<[^>]+>", " ", fragment)
    return text.split()


def make_excerpt(fragment: str) -> str:
    return " ".join(plain_words(fragment)[:55]) + " [&#8230;]"


# --- related posts, footer -----------------------------------------------------------------------


def choose_related(post: Post, posts: list[Post]) -> list[Post]:
    """What a related-posts plugin would show: shared categories and tags, older posts first."""
    want = 1 if post.pid % 3 == 0 else 2

    def score(other: Post) -> int:
        cats = len(set(post.categories) & set(other.categories))
        tags = len(set(post.tags) & set(other.tags))
        return 3 * cats + 2 * tags

    others = [p for p in posts if p is not post and score(p) > 0]
    older = sorted(
        (p for p in others if p.date < post.date), key=lambda p: (-score(p), -p.date.timestamp())
    )
    newer = sorted(
        (p for p in others if p.date > post.date), key=lambda p: (-score(p), p.date.timestamp())
    )
    return (older + newer)[:want]


def related_block(post: Post) -> str:
    items = "".join(
        f'<li><a href="{r.link}" class="crp_link post-{r.pid}">'
        f'<span class="crp_title">{texturize(r.title)}</span></a>'
        f'<span class="crp_excerpt"> {r.excerpt}</span> '
        f'<a href="{r.link}" class="crp_read_more">Read more</a></li>'
        for r in post.related
    )
    return (
        '<div class="crp_related "><h3>Related Post</h3>'
        f'<ul>{items}</ul><div class="crp_clear"></div></div>'
    )


def footer(post: Post) -> str:
    return (
        f'<p>The post <a href="{post.link}">{texturize(post.title)}</a> appeared first on '
        f'<a href="{SITE}">{SITE_NAME}</a>.</p>'
    )


# --- reading posts.txt ---------------------------------------------------------------------------


def parse_posts(source: str) -> list[Post]:
    posts: list[Post] = []
    for n, chunk in enumerate(source.split("\n=====\n")[1:], start=1):
        head, sep, body = chunk.partition("\n-----\n")
        if not sep:
            raise SystemExit(f"posts.txt: block {n} has no '-----' line")
        meta = dict(line.split(": ", 1) for line in head.strip().splitlines())
        posts.append(
            Post(
                pid=int(meta["id"]),
                date=dt.datetime.strptime(meta["date"], "%Y-%m-%d %H:%M").replace(tzinfo=dt.UTC),
                slug=meta["slug"],
                title=meta["title"],
                author=meta["author"],
                categories=[c.strip() for c in meta["categories"].split(",")],
                tags=[t.strip() for t in meta["tags"].split(",")],
                body=body,
            )
        )
    return posts


def check(posts: list[Post]) -> None:
    ids = [p.pid for p in posts]
    slugs = [p.slug for p in posts]
    if len(set(ids)) != len(ids) or len(set(slugs)) != len(slugs):
        raise SystemExit("posts.txt: duplicate id or slug")
    long_posts = [p.slug for p in posts if p.words > MAX_WORDS]
    if len(long_posts) > 1:
        raise SystemExit(
            f"posts.txt: only one post may be longer than {MAX_WORDS} words: {long_posts}"
        )
    for p in posts:
        if not MIN_WORDS <= p.words <= LONG_MAX_WORDS:
            raise SystemExit(f"posts.txt: post {p.slug} has {p.words} words")
        if not 1 <= len(p.categories) <= 2 or not 2 <= len(p.tags) <= 5:
            raise SystemExit(f"posts.txt: post {p.slug} needs 1-2 categories and 2-5 tags")
        if "]]>" in p.html:
            raise SystemExit(f"posts.txt: post {p.slug} contains ']]>'")


# --- writing the feed ----------------------------------------------------------------------------


def rfc822(when: dt.datetime) -> str:
    return format_datetime(when)


def item_xml(p: Post, full_html: str) -> str:
    comments = (p.pid * 7) % 6
    anchor = "#comments" if comments else "#respond"
    cats = "".join(
        f'\n\t\t<category domain="category"><![CDATA[{c}]]></category>' for c in p.categories
    )
    tags = "".join(f'\n\t\t<category domain="post_tag"><![CDATA[{t}]]></category>' for t in p.tags)
    enclosure = ""
    if p.images:
        length = 180_000 + (p.pid * 7919) % 140_000
        enclosure = f'\n\t\t<enclosure url="{p.images[0]}" length="{length}" type="image/jpeg" />'
    return f"""\t<item>
\t\t<title>{texturize(p.title)}</title>
\t\t<link>{p.link}</link>
\t\t\t\t\t<comments>{p.link}{anchor}</comments>
\t\t
\t\t<dc:creator><![CDATA[{p.author}]]></dc:creator>
\t\t<pubDate>{rfc822(p.date)}</pubDate>\t\t\t\t{cats}{tags}

\t\t<guid isPermaLink="false">{SITE}/?p={p.pid}</guid>

\t\t\t\t\t<description><![CDATA[{p.excerpt}]]></description>
\t\t\t\t\t\t\t\t\t\t<content:encoded><![CDATA[{full_html}]]></content:encoded>
\t\t\t\t\t
\t\t\t\t\t<wfw:commentRss>{p.link}feed/</wfw:commentRss>
\t\t\t<slash:comments>{comments}</slash:comments>
\t\t{enclosure}
\t\t\t</item>
"""


def build(source: str) -> str:
    posts = sorted(parse_posts(source), key=lambda p: p.date, reverse=True)
    site = Site(posts)
    for p in posts:
        p.html = render_body(p, site)
        p.words = len(plain_words(p.html))
        p.excerpt = make_excerpt(p.html)
    check(posts)
    items = []
    for p in posts:
        p.related = choose_related(p, posts)
        full = p.html + "\n" + related_block(p)
        if p.date >= FOOTER_FROM:
            full += "\n" + footer(p)
        items.append(item_xml(p, full + "\n"))
    head = f"""<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"
\txmlns:content="http://purl.org/rss/1.0/modules/content/"
\txmlns:wfw="http://wellformedweb.org/CommentAPI/"
\txmlns:dc="http://purl.org/dc/elements/1.1/"
\txmlns:atom="http://www.w3.org/2005/Atom"
\txmlns:sy="http://purl.org/rss/1.0/modules/syndication/"
\txmlns:slash="http://purl.org/rss/1.0/modules/slash/"
\t>

<channel>
\t<title>{SITE_NAME}</title>
\t<atom:link href="{SITE}/feed/" rel="self" type="application/rss+xml" />
\t<link>{SITE}</link>
\t<description>{texturize(DESCRIPTION)}</description>
\t<lastBuildDate>{rfc822(posts[0].date)}</lastBuildDate>
\t<language>en-US</language>
\t<sy:updatePeriod>weekly</sy:updatePeriod>
\t<sy:updateFrequency>1</sy:updateFrequency>
\t<generator>{GENERATOR}</generator>

<image>
\t<url>{SITE}/wp-content/uploads/2026/01/cropped-biz-crusader-icon-32x32.png</url>
\t<title>{SITE_NAME}</title>
\t<link>{SITE}</link>
\t<width>32</width>
\t<height>32</height>
</image>
"""
    feed = head + "".join(items) + "\t</channel>\n</rss>\n"
    ET.fromstring(feed.encode("utf-8"))  # noqa: S314 - our own output: well-formed or raise
    return feed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when feed.xml is stale")
    args = parser.parse_args()
    feed = build((HERE / "posts.txt").read_text(encoding="utf-8"))
    target = HERE / "feed.xml"
    if args.check:
        if target.read_text(encoding="utf-8") != feed:
            print("feed.xml is stale: run examples/biz-crusader/build_feed.py", file=sys.stderr)
            return 1
        return 0
    target.write_text(feed, encoding="utf-8")
    print(f"wrote {target} ({feed.count('<item>')} items)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
