"""`python -m facestream` is the `facestream` command."""

from facestream.cli import main

main()
