"""What the bytes are, and which bytes a path holds.

``sniff``: the image type from magic bytes, the upload's size limit, and reading regular
files (bounded, never blocking on a FIFO). ``stat_cache``: which sha256 a path holds without
reading it again (git's racy-clean rule), hashing a file it does not know, and its rows.

This package sits below the ledger: it is handed the ledger's connection (or an object with
the stat cache's two methods) and never imports a ledger module. Importing it costs nothing:
the console script's hit imports ``stat_cache`` through it, so nothing is imported here.
"""
