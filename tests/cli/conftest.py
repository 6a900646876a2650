"""The command-line tests' in-process ``cli`` fixture now lives in tests/conftest.py, shared with
the online tests."""
