"""``python -m assetcache``: the same command line as ``assetcache``."""

from ._cli import main

if __name__ == "__main__":
    main()
