"""What the tests share: paths, the servers they start, and readers of their streams."""
