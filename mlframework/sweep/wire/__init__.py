"""Between the driver and the workers: the Celery app, task messages and trial events, ids, liveness, control."""
