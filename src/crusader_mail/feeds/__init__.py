"""Reading feeds, by stage: :mod:`~crusader_mail.feeds.fetch` (HTTP and local files, over
:mod:`~crusader_mail.feeds.network`: checked addresses, one deadline),
:mod:`~crusader_mail.feeds.defuse` (the XML's DOCTYPE), :mod:`~crusader_mail.feeds.parse`
(feedparser -> posts), :mod:`~crusader_mail.feeds.sanitize` (the posts' HTML, with nh3) and
:mod:`~crusader_mail.feeds.read` (the read stage that runs them, one feed or many)."""
