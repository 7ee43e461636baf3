"""Create or upgrade the configured store's schema: `python init_db.py [--check] [--embed]`.

Works for whichever store the settings select (SQLite by default, MongoDB with MONGODB_URI):
tables or collections, the MongoDB JSON-schema validators, indexes, and versioned migrations
recorded in the database itself. Running it again changes nothing. `--embed` then gives every
message and upload chunk stored before search by meaning existed its vector (semantic/), with
progress; stopped and run again, it resumes where it was.
"""
from __future__ import annotations

import argparse
import sys
import time

from config import Config, ConfigError
from storage import make_store


def initialize_db(config: Config, check: bool = False) -> list[str]:
    """Apply pending migrations (or only list them with check=True); returns their names."""
    store = make_store(config)
    try:
        return store.migrate(apply=not check)
    finally:
        store.close()


def embed_all(config: Config, out=None) -> int:
    """Back-fill vectors for everything stored without one; returns how many items were embedded."""
    from semantic import indexer, model
    store = make_store(config)
    started = time.monotonic()

    def report(kind: str, done: int, total: int) -> None:
        rate = done / max(time.monotonic() - started, 1e-9)
        print(f"{kind}s: {done}/{total} embedded ({rate:.0f}/s so far)", file=out or sys.stdout, flush=True)
    try:
        return indexer.backfill(store, model.shared(), batch=config.EMBED_BATCH, report=report)
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="list pending migrations without applying them; exit 1 if any")
    parser.add_argument("--embed", action="store_true",
                        help="after migrating, embed every message and upload chunk that has no vector yet")
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
    verb = "pending" if args.check else "applied"
    for name in names:
        print(f"{target}: {verb} migration {name}")
    if args.check:
        return 1 if names else 0
    if args.embed:
        from semantic import model  # only --embed loads the model's libraries
        try:
            print(f"{target}: embedded {embed_all(config)} items.")
        except model.ModelUnavailable as error:
            print(f"cannot embed: {error}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
