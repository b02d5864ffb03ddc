"""The web app of `crusader-mail serve`."""
