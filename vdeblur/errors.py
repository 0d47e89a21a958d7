"""One exception type for everything a user can get wrong; the CLI prints it as one line."""


class VdeblurError(Exception):
    """A problem with the user's input, files or machine, reported without a traceback."""


def require_pyav() -> None:
    """PyAV is imported only by the commands that read or write video (deblur, bench, compile):
    without it, train, eval, export and info still work, and those say why in one line."""
    try:
        import av  # noqa: F401
    except ImportError as e:
        raise VdeblurError(f"reading and writing video needs PyAV ({e}): pip install 'av<19'") from None
