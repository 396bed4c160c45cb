"""pytest suite for the ai extension (the integration tests need the cluster running)."""
