"""The local watchtower."""
