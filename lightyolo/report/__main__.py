"""`python -m lightyolo.report`: see `lightyolo.report.cli`."""

from lightyolo.report.cli import main

raise SystemExit(main())
