"""coaudio's command-line layer (installed as ``coaudio_cli``). Only this package prints."""
