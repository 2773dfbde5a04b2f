"""`python -m lightyolo COMMAND …`: the `lightyolo` console script (lightyolo.cli)."""

from lightyolo.cli import main

main()
