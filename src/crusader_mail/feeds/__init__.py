"""Reading feeds: fetch over HTTP, defuse, parse with feedparser, sanitize, excerpt."""
