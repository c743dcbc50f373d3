"""``python -m paramscope``: the command line."""

from paramscope.cli import main

raise SystemExit(main())
