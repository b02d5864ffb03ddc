"""crusader-mail: a blog's feed, composed into a newsletter, delivered through SendGrid."""

__version__ = "0.1.0"

USER_AGENT = f"crusader-mail/{__version__} (+https://github.com/crusader-mail/crusader-mail)"
