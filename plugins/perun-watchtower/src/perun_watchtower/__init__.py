"""perun-watchtower."""
