import os
import signal
import sys

from .cli import main


def _leave(code: int) -> None:
    """Exit now with `code`: after Ctrl-C, interpreter shutdown could still meet a late KeyboardInterrupt and end
    the process by SIGINT (-2) instead of 130. Every file is already written atomically and closed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


try:
    code = main()
except KeyboardInterrupt:  # Ctrl-C outside a verb's own handling (while starting up or writing the last line)
    sys.stderr.write("cnnscope: interrupted\n")
    _leave(130)
except SystemExit as stop:
    if stop.code == 130:
        _leave(130)
    raise
if code == 130:
    _leave(130)
sys.exit(code)
