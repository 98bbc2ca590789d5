"""The parameter grammar: grids and search spaces in parameters.yml, and how a combination becomes arguments (pure)."""
