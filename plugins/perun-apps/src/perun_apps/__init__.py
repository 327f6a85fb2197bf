"""perun-apps: channel apps for perun-py, with their on-chain contracts."""
