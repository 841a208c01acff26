import sys

from .cli import main

try:
    code = main()
except KeyboardInterrupt:  # Ctrl-C outside a verb's own handling (while starting up or writing the last line)
    sys.stderr.write("cnnscope: interrupted\n")
    code = 130
sys.exit(code)
