"""The files store: text files in the repository (CSV list, JSON Lines archive and ledgers)."""

from crusader_mail.storage.files.store import FilesStore

__all__ = ["FilesStore"]
