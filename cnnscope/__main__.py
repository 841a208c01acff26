import multiprocessing
import os
import signal
import sys

from .cli import main


def _leave_interrupted() -> None:
    """Exit 130 after Ctrl-C. A KeyboardInterrupt that went through code run by an embedded interpreter call
    leaves a flag that makes CPython end the process by SIGINT (-2) even after a clean SystemExit(130), so a
    run without worker processes or Ray leaves at once (every file is already written atomically and
    closed); one with them exits normally, which joins and stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
    ray = sys.modules.get("ray")
    if not multiprocessing.active_children() and not (ray is not None and ray.is_initialized()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(130)


try:
    code = main()
except KeyboardInterrupt:  # Ctrl-C outside a verb's own handling (while starting up or writing the last line)
    sys.stderr.write("cnnscope: interrupted\n")
    code = 130
except SystemExit as stop:
    code = stop.code
if code == 130:
    _leave_interrupted()
# the work is over and its files are written: a Ctrl-C during the interpreter's own shutdown (~0.2 s of freeing
# modules) would otherwise end a finished run by SIGINT instead of its exit code
signal.signal(signal.SIGINT, signal.SIG_IGN)
sys.exit(code)
