"""`crusader-mail snippet [--json]`: print the subscribe form to paste into the blog.

``--json`` prints ``{"action", "html"}``: where the form posts, and the form itself."""

from __future__ import annotations

import json

import click

from crusader_mail.cli.context import AppContext
from crusader_mail.subscriptions.signup import public_url
from crusader_mail.subscriptions.signup import snippet as subscribe_snippet


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def snippet(app: AppContext, as_json: bool) -> None:
    """Print an HTML form for the blog that subscribes a visitor (no script needed).

    It posts to serve's /subscribe at [server] public_url (default: [newsletter] confirm_url
    without its /confirm); serve shows the address once more with a Subscribe button, then
    emails a link to confirm. Exit 2 when neither setting is there. The words are in
    templates/web/snippet.html.
    """
    html = subscribe_snippet(app.settings)
    if as_json:
        action = f"{public_url(app.settings)}/subscribe"
        click.echo(json.dumps({"action": action, "html": html}))
        return
    click.echo(html, nl=False)
