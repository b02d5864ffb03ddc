"""Related posts: topic beats recency, exclusions, avoidance, fallback, determinism."""

from __future__ import annotations

import random

from crusader_mail.compose.related import choose_related, plain_text, tokenize
from crusader_mail.models import Post
from tests.support.golden import make_post

PRICING = "<p>How to price your services, raise prices and avoid discounts when clients negotiate the price.</p>"


def unrelated(n: int, topic: str) -> Post:
    return make_post(
        n,
        f"Notes on {topic}",
        content=f"<p>This week I learned about {topic} and {topic} tools for the team.</p>",
    )


def ids(posts: list[Post]) -> list[str]:
    return [p.id for p in posts]


def test_a_shared_topic_beats_recency() -> None:
    issue = [make_post(1, "Stop discounting: price your services with confidence", content=PRICING)]
    recent = [unrelated(n, t) for n, t in ((2, "gardening"), (3, "hiring"), (4, "podcasts"))]
    old_pricing = make_post(300, "Raise your prices without losing clients", content=PRICING)
    chosen = choose_related(issue, [*recent, old_pricing], avoid=(), count=3)
    assert chosen[0].id == old_pricing.id


def test_shared_categories_and_tags_count() -> None:
    issue = [make_post(1, "Alpha beta", categories=("Sales",), tags=("cold-calls",))]
    same_tag = make_post(50, "Gamma delta", tags=("cold-calls",))
    same_category = make_post(60, "Epsilon zeta", categories=("Sales",))
    others = [make_post(n, f"Unrelated {n}", categories=("Other",)) for n in range(2, 8)]
    chosen = choose_related(issue, [*others, same_tag, same_category], avoid=(), count=2)
    assert set(ids(chosen)) == {same_tag.id, same_category.id}
    # With labels hidden, the ranking has nothing to go on and falls back to recency.
    text_only = choose_related(
        issue, [*others, same_tag, same_category], avoid=(), count=2, use_labels=False
    )
    assert ids(text_only) == [others[0].id, others[1].id]


def test_posts_of_this_issue_are_never_related() -> None:
    issue = [make_post(1, "Price with confidence", content=PRICING)]
    twin = issue[0].model_copy(update={"id": "other-id-same-link"})
    similar = make_post(30, "Pricing again", content=PRICING)
    chosen = choose_related(issue, [issue[0], twin, similar], avoid=(), count=3)
    assert ids(chosen) == [similar.id]


def test_never_one_post_twice() -> None:
    issue = [
        make_post(1, "Price with confidence", content=PRICING),
        make_post(2, "Prices and discounts", content=PRICING),
    ]
    similar = make_post(30, "Pricing again", content=PRICING)
    chosen = choose_related(issue, [similar, similar, make_post(40)], avoid=(), count=3)
    assert ids(chosen) == [similar.id, make_post(40).id]


def test_recent_repeats_are_avoided_unless_nothing_else_qualifies() -> None:
    issue = [make_post(1, "Price with confidence", content=PRICING)]
    shown_lately = make_post(30, "Pricing, again", content=PRICING)
    also_similar = make_post(31, "Prices: the sequel", content=PRICING)
    filler = [unrelated(n, "gardening") for n in (5, 6)]
    pool = [shown_lately, also_similar, *filler]
    chosen = choose_related(issue, pool, avoid={shown_lately.id}, count=2)
    assert shown_lately.id not in ids(chosen)
    assert chosen[0].id == also_similar.id
    # Only when every other candidate is used up does the avoided post come back.
    chosen = choose_related(issue, pool, avoid={shown_lately.id}, count=4)
    assert ids(chosen)[-1] == shown_lately.id
    assert len(chosen) == 4


def test_small_archive_falls_back_to_recent_older_posts() -> None:
    issue = [make_post(1, "Price with confidence", content=PRICING)]
    pool = [unrelated(20, "gardening"), unrelated(10, "hiring"), unrelated(15, "travel")]
    chosen = choose_related(issue, pool, avoid=(), count=3)
    assert ids(chosen) == [pool[1].id, pool[2].id, pool[0].id]  # newest first
    assert choose_related(issue, pool[:1], avoid=(), count=3) == pool[:1]
    assert choose_related(issue, [], avoid=(), count=3) == []
    assert choose_related(issue, pool, avoid=(), count=0) == []


def test_fallback_prefers_posts_older_than_the_issue() -> None:
    issue = [make_post(5, "Price with confidence", content=PRICING)]
    newer = unrelated(1, "gardening")  # e.g. a new post waiting for the next issue
    older = unrelated(9, "hiring")
    assert ids(choose_related(issue, [newer, older], avoid=(), count=1)) == [older.id]


def test_each_issue_post_gets_its_own_related_posts() -> None:
    issue = [
        make_post(1, "Price with confidence", content=PRICING),
        make_post(
            2,
            "Hiring your first salesperson",
            content="<p>Hiring a salesperson: interviews, hiring process, sales hiring mistakes.</p>",
        ),
    ]
    pricing = [make_post(n, f"Pricing lesson {n}", content=PRICING) for n in (30, 31, 32)]
    hiring = make_post(
        40, "Sales hiring mistakes", content="<p>Hiring mistakes when hiring a salesperson.</p>"
    )
    chosen = choose_related(issue, [*pricing, hiring], avoid=(), count=2)
    assert set(ids(chosen)) == {pricing[0].id, hiring.id}


def test_same_input_same_choice_and_stable_ties() -> None:
    issue = [make_post(1, "Price with confidence", content=PRICING)]
    # Identical text and date: ties are broken by date (newer first), then by id.
    twins = [make_post(n, "Pricing twin", content=PRICING, days_ago=30) for n in (77, 55, 66)]
    pool = [*twins, *(unrelated(n, "gardening") for n in range(2, 12))]
    first = choose_related(issue, pool, avoid=(), count=3)
    assert ids(first) == sorted(t.id for t in twins)
    rng = random.Random(7)
    for _ in range(5):
        shuffled = pool[:]
        rng.shuffle(shuffled)
        assert ids(choose_related(issue, shuffled, avoid=(), count=3)) == ids(first)


def test_tokenize_handles_stopwords_plurals_and_cjk() -> None:
    assert tokenize("The Prices of the Services") == ["price", "service"]
    assert tokenize("中国经济") == ["中国", "国经", "经济"]
    assert plain_text("<p>a &amp; b</p><pre>code here</pre><p>c</p>") == "a & b c"
