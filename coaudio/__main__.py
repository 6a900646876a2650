"""``python -m coaudio``: the same command-line interface as the ``coaudio`` script.

The library works without the command-line layer (Typer and rich, installed as
``coaudio_cli``); if that is missing, say so instead of failing with a traceback.
"""

import sys

try:
    from coaudio_cli.main import main
except KeyboardInterrupt:  # Ctrl-C while the command line is still loading
    sys.stderr.write("interrupted\n")
    # Imports run code that Python generates from strings (dataclasses): a KeyboardInterrupt that
    # left such code marks the process for death by SIGINT at exit; running a string clears the
    # mark (coaudio_cli.errors.forget_python_interrupt_mark, not importable here: its import was cut).
    exec("")
    sys.exit(130)
except ImportError as exc:
    sys.stderr.write(
        f"error: the coaudio command line is not installed here ({exc}); "
        "install the whole package: pip install coaudio\n"
    )
    sys.exit(1)

if __name__ == "__main__":
    main()
