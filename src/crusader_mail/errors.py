"""Every error crusader-mail raises on purpose, and the exit code each one maps to.

Library code raises these; only the CLI (``crusader_mail.cli``) turns them into one line on
stderr and an exit code. An expected failure never shows a traceback.

::

    CrusaderMailError                 exit 1   anything crusader-mail reports on purpose
    ├── ConfigError                   exit 2   a bad setting: names the key, its source, what is expected
    ├── StateError                    exit 1   a state file is damaged or busy; it is never overwritten
    │   ├── LockTimeout               exit 1   another run holds the lock
    │   ├── CheckpointFailed          exit 1   the state could not be pushed before a send: nothing sent
    │   └── SchemaMismatch            exit 2   the database schema is not this version's (`db upgrade`)
    ├── FeedError                     exit 1   one feed could not be fetched or parsed (url, reason)
    ├── ComposeError                  exit 1   the issue could not be rendered
    │   ├── TemplateError             exit 1   a template is broken (template name and line)
    │   └── GuardError                exit 1   the rendered issue is not safe to send
    ├── SubscriberError               exit 1   the subscriber list refused a change
    │   ├── InvalidAddress            exit 1   not a deliverable address
    │   └── ImportRejected            exit 1   an import had bad rows (each one named)
    ├── TokenError                    exit 1   a signed token is forged, for someone else, or expired
    │   └── TokenExpired              exit 1
    ├── SendError                     exit 1   a SendGrid call failed (a stopped send: partial report)
    │   ├── SendRejected              exit 1   SendGrid refused the request (400/401/403/404/413)
    │   └── RetriesExhausted          exit 1   SendGrid did not accept within sendgrid.max_retries
    └── InboxError                    exit 1   a mailbox could not be read
"""

from __future__ import annotations


class CrusaderMailError(Exception):
    """Base class. ``str(error)`` is the one line the user sees."""

    exit_code: int = 1


class ConfigError(CrusaderMailError):
    exit_code = 2


class StateError(CrusaderMailError):
    pass


class LockTimeout(StateError):
    pass


class CheckpointFailed(StateError):
    """The ``--checkpoint`` command failed: the issue's ``sending`` record may not have reached
    the repository, so the send did not start."""


class SchemaMismatch(StateError):
    """The database has no schema, an older one (run ``crusader-mail db upgrade``), or a newer
    one than this crusader-mail knows."""

    exit_code = 2


class FeedError(CrusaderMailError):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


class ComposeError(CrusaderMailError):
    pass


class TemplateError(ComposeError):
    pass


class GuardError(ComposeError):
    pass


class SubscriberError(CrusaderMailError):
    pass


class InvalidAddress(SubscriberError):
    pass


class ImportRejected(SubscriberError):
    pass


class TokenError(CrusaderMailError):
    pass


class TokenExpired(TokenError):
    pass


class SendError(CrusaderMailError):
    #: The partial ``models.SendReport`` when a send stopped midway (set by ``deliver``).
    report: object | None = None


class SendRejected(SendError):
    pass


class RetriesExhausted(SendError):
    """SendGrid did not accept a request within the retry bound."""

    def __init__(self, message: str, *, answered: bool) -> None:
        super().__init__(message)
        #: True when the last attempt got an HTTP answer (so SendGrid did not take the request);
        #: False after a connection error or timeout (it may have).
        self.answered = answered


class InboxError(CrusaderMailError):
    pass
