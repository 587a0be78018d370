"""`python -m runner.cli` is the `oneoff-runner` command."""

from runner.cli.main import main

main()
