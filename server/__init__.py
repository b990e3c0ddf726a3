"""The HTTP layer of classifyd: Starlette routes over the engine; never imports torch."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("classifyd")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
