"""``python -m sync``: see :mod:`sync.cli`."""

from sync.cli import main

raise SystemExit(main())
