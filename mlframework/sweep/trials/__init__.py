"""The worker side: the task API of tasks.py, one trial's run, its environment, metrics, GPU use and provenance."""
