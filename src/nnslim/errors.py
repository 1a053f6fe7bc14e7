"""The one exception type the command line turns into a one-line message."""


class NnslimError(Exception):
    """A problem with the user's input or environment, stated in one line."""
