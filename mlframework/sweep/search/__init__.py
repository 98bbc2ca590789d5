"""Searches instead of grids: the Optuna study, the trial source the driver asks, its journal, our pruners."""
