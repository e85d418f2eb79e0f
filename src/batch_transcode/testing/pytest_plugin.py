"""pytest fixtures for testing code that uses batch_transcode offline."""
