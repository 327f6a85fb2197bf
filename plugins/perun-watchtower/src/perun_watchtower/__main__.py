"""``python -m perun_watchtower serve --config tower.toml``."""

from perun_watchtower.cli import main

raise SystemExit(main())
