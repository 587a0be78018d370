"""`uv run python -m bench`: every scenario against the local engine; a table and results.json."""

from bench.run import main

main()
