"""`python -m pacs` runs the command line."""

from pacs.cli import main

raise SystemExit(main())
