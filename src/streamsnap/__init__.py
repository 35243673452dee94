"""streamsnap: still pictures of live WebRTC streams, on demand, over the WCS protocol."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("streamsnap")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
