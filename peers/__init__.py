"""Loopback look-alikes of the services crusader-mail talks to, for tests and benchmarks:
a feed server over HTTP, the SendGrid v3 API, an IMAP server (dovecot) and PostgreSQL, each on
127.0.0.1 only."""
