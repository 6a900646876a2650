"""Online inference: audio in, one prediction per hop out (``coaudio stream``, ``coaudio classify``)."""
