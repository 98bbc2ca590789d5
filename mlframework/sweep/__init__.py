"""What a sweep is and how it runs: grids and search spaces, the worker side (tasks, runner), the driver side."""
