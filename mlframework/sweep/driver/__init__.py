"""The sweep driver: start or resume a sweep, send its trials, record them, recover, cancel, reproduce."""
