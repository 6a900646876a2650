"""Pretrained front ends: which models coaudio knows, where they come from, and the per-user
store that fetches, verifies and names them (``coaudio models list|fetch``)."""
