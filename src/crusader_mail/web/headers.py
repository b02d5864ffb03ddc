"""The headers every answer of ``serve`` carries (:data:`SECURITY_HEADERS`), and those of the
pages whose forms are checked for their origin (:data:`FORM_HEADERS`)."""

from __future__ import annotations

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # tokens are in the URLs
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
FORM_HEADERS = {**SECURITY_HEADERS, "Referrer-Policy": "same-origin"}
"""The headers of pages whose forms are checked for their origin (subscribe, preferences, the
unsubscribe page's pause): a browser sends their form's ``Origin`` (under ``no-referrer`` it
would send ``Origin: null``, which is refused); a token in their URL goes to no other site."""
