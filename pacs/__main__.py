"""`python -m pacs` runs the command line."""

from pacs.cli.main import main

raise SystemExit(main())
