"""The shipped training recipes, one TOML file each; installed as ``coaudio_recipes``.

Data only: look them up through :mod:`coaudio.recipes`, which reads them with
importlib.resources so that the same names work from a clone, an editable install and a wheel.
"""
