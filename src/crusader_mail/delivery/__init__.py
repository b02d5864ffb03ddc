"""Delivering mail through SendGrid.

::

    client        SendGrid clients, retries with backoff, one-line rejections
    links         per-reader unsubscribe links, list headers and placeholder values
    body          the /v3/mail/send request bodies (issue batches, transactional messages)
    transport     where bodies go: SendGridTransport, or DryRunTransport (the outbox)
    engine        deliver(): the ledger-driven send of an issue; send_test()
    dry_run       the dry-run outbox writer
    mailer        transactional mail: Mailer, SendGridMailer, make_mailer
    suppressions  SendGrid's suppression lists pulled into the subscriber list
"""
