"""Create or upgrade the configured store's schema: `python init_db.py [--check]`.

Works for whichever store the settings select (SQLite by default, MongoDB with MONGODB_URI):
tables or collections, the MongoDB JSON-schema validators, indexes, and versioned migrations
recorded in the database itself. Running it again changes nothing.
"""
from __future__ import annotations

import argparse
import sys

from config import Config, ConfigError
from storage import make_store


def initialize_db(config: Config, check: bool = False) -> list[str]:
    """Apply pending migrations (or only list them with check=True); returns their names."""
    store = make_store(config)
    try:
        return store.migrate(apply=not check)
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="list pending migrations without applying them; exit 1 if any")
    args = parser.parse_args(argv)
    try:
        config = Config().validate()
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    target = "MongoDB" if config.MONGODB_URI else f"SQLite at {config.sqlite_path}"
    names = initialize_db(config, check=args.check)
    if not names:
        print(f"{target}: schema is up to date, nothing to do.")
        return 0
    verb = "pending" if args.check else "applied"
    for name in names:
        print(f"{target}: {verb} migration {name}")
    return 1 if args.check else 0


if __name__ == "__main__":
    sys.exit(main())
