"""What a sweep leaves on disk, read back: its results directory, the catalog of sweeps, ranking, exports."""
