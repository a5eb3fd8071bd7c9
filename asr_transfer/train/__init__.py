"""The training loop, its checkpoints, schedules and distributed set-up."""
