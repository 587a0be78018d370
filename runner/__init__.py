"""oneoff-runner: run one-off containers through REST and MCP, leaving nothing behind."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("oneoff-runner")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
