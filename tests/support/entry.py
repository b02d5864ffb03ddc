"""The console entry point in this process: what a real ``crusader-mail`` prints and exits with
(``main`` maps library errors to one line on stderr and an exit code), quicker than a child
process (no tests here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from click.testing import CliRunner

from crusader_mail.cli import main
from crusader_mail.cli.context import AppContext


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str


def run_main(
    *args: str, obj: AppContext | None = None, env: Mapping[str, str] | None = None
) -> Ran:
    """``crusader-mail ARGS`` through :func:`crusader_mail.cli.main`, with ``env`` set."""
    runner = CliRunner()
    with runner.isolation(env=dict(env or {})) as (out, err, _):
        try:
            main(list(args), obj=obj)
        except SystemExit as exited:
            code = exited.code
        else:  # pragma: no cover - main always exits
            code = 0
        return Ran(int(code or 0), out.getvalue().decode(), err.getvalue().decode())
