"""coaudio: online audio classification with Continual Transformers.

Importing the package does no work; submodules are imported where they are used.
"""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
