"""What a caller hands a step to follow it: the progress display and the checkpoint."""

from __future__ import annotations

from collections.abc import Callable

from crusader_mail.delivery.batches import SendProgress

Progress = SendProgress
"""Follows a long step: ``start(total)``, ``advance(count)``, ``stop()`` (feeds read, readers
sent); the CLI draws it (:mod:`crusader_mail.cli.progress`)."""

Checkpoint = Callable[[], None]
"""Run after an issue's ``sending`` record is saved and before its first request (the workflow
pushes the state); raises :class:`CheckpointFailed` when the state could not be kept."""
