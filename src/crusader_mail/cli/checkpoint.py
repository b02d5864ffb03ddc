"""``--checkpoint COMMAND`` of ``run`` and ``send``: a command run after the issue's ``sending``
record is saved and before its first request (the workflow's is
``bash scripts/commit-state.sh state subscribers``, which pushes the state).

The command is split like a shell line (:func:`shlex.split`) and run without a shell; what it
prints goes to stderr, so ``--json`` output stays one object. A command that cannot start or
exits non-zero raises :class:`~crusader_mail.errors.CheckpointFailed`: nothing is sent.
"""

from __future__ import annotations

import shlex
import subprocess

import click

from crusader_mail.errors import CheckpointFailed
from crusader_mail.pipeline import Checkpoint

OPTION_HELP = (
    "Run COMMAND after the issue is recorded as sending and before the first request "
    "(e.g. 'bash scripts/commit-state.sh state subscribers'); if it fails nothing is sent."
)


def command_checkpoint(command: str | None) -> Checkpoint | None:
    """The checkpoint that runs ``command``, or ``None`` without one."""
    if command is None:
        return None
    argv = shlex.split(command)
    if not argv:
        raise click.BadParameter("is empty", param_hint="--checkpoint")

    def checkpoint() -> None:
        try:
            done = subprocess.run(  # noqa: S603 - the operator's own --checkpoint command
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
            )
        except OSError as error:
            raise CheckpointFailed(
                f"--checkpoint: cannot run {argv[0]!r}: {error.strerror}; nothing was sent"
            ) from None
        if done.stdout:
            click.echo(done.stdout.rstrip("\n"), err=True)
        if done.returncode != 0:
            raise CheckpointFailed(
                f"--checkpoint {argv[0]!r} failed (exit {done.returncode}): the issue's "
                "sending record may not have reached the repository, so nothing was sent"
            )

    return checkpoint
