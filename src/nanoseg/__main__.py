"""``python -m nanoseg`` runs the command line."""

from nanoseg.cli import main

main()
