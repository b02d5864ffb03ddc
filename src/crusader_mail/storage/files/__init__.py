"""The files store: text files in the repository (CSV list, JSON Lines archive and ledgers)."""
