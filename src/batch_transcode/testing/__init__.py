"""Offline Azure for tests: Azurite plus the Batch REST emulator."""
