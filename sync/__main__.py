"""``python -m sync``: see :mod:`sync.ops.cli`."""

from sync.ops.cli import main

raise SystemExit(main())
