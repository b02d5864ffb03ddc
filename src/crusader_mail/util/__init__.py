"""Small helpers every subsystem may use: atomic state files, masking, addresses, tokens, text."""
