"""Composing an issue: related posts, Jinja2 templates, premailer, guards, plain text."""
