"""Where state lives: the storage contract and the stores behind it."""
