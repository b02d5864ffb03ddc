"""Delivering mail through SendGrid: request bodies, the ledger-driven send, dry runs, suppressions."""
