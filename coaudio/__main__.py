"""``python -m coaudio``: the same command-line interface as the ``coaudio`` script."""

from coaudio_cli.main import main

if __name__ == "__main__":
    main()
