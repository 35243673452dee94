"""streamsnap: still pictures of live WebRTC streams, on demand, over the WCS protocol."""


def __getattr__(name: str) -> str:
    # `__version__` is read from the installed metadata when asked (importlib.metadata takes ~0.2 s to
    # import): importing the package stays instant, so the command line answers Ctrl-C from its first moment.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("streamsnap")
        except PackageNotFoundError:  # running from a source tree that was never installed
            found = "0.0.0"
        globals()["__version__"] = found
        return found
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
