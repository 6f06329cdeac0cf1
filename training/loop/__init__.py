"""The loop: one training step over a clip, the trainer (checkpoints, logging, validation) and diagnosis."""
