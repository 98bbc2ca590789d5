"""What the cluster is (plain data), how its hosts are reached (SSH), and what runs there (containers)."""
