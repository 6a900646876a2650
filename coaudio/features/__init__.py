"""Audio features: VGGish log-mel frames and patches, offline and streaming."""
