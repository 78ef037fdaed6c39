"""``python -m assetcache``: the same command line as ``assetcache``."""

from ._entry import main

if __name__ == "__main__":
    main()
