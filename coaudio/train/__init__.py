"""Training: windows of clips, a seeded loop, checkpoints that resume exactly."""
