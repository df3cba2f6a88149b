"""``python -m twinsync`` is the ``twinsync`` command."""

from twinsync.cli import main

raise SystemExit(main())
