"""`crusader-mail snippet`: print the subscribe form to paste into the blog."""

from __future__ import annotations

import click

from crusader_mail.cli.context import AppContext
from crusader_mail.subscriptions.signup import snippet as subscribe_snippet


@click.command()
@click.pass_obj
def snippet(app: AppContext) -> None:
    """Print an HTML form for the blog that subscribes a visitor (no script needed).

    It posts to serve's /subscribe at [server] public_url (default: [newsletter] confirm_url
    without its /confirm); serve shows the address once more with a Subscribe button, then
    emails a link to confirm. Exit 2 when neither setting is there. The words are in
    templates/web/snippet.html.
    """
    click.echo(subscribe_snippet(app.settings), nl=False)
