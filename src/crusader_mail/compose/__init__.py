"""Planning and composing an issue: which posts, related posts, Jinja2 templates, premailer, guards, plain text."""
