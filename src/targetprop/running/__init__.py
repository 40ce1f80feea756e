"""Running: settings, data, the trainer, checkpoints, optimizers, reopening
runs and timing."""
