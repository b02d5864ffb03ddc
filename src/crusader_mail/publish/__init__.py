"""The public archive of sent issues: pages, index and Atom feed (:mod:`.site`, :mod:`.atom`)."""
