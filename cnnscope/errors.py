"""The one exception type for problems with what the user gave us."""


class CnnscopeError(Exception):
    """Bad input (a file, a name, an option). The CLI prints it as one line and exits with code 2."""
