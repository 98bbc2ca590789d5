"""What both halves take from the operating system: process trees, parent-death signals, atomic files."""
