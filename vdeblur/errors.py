"""One exception type for everything a user can get wrong; the CLI prints it as one line."""


class VdeblurError(Exception):
    """A problem with the user's input, files or machine, reported without a traceback."""
