"""Mail from readers: sources (files, IMAP), classification, commands."""
