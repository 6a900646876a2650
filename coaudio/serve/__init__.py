"""``coaudio serve``: many live streams through one model, a live page, a detection history."""
