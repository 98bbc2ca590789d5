"""Embedded mode: the sweep's workers on this machine, and the watchdog that stops them when the driver dies."""
