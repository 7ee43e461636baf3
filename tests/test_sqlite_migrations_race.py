"""Several instances starting at once on one SQLite file (AUTO_MIGRATE=true, two gunicorns behind
nginx) all migrate it: each migration is re-checked inside its write transaction, so none fails."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIGRATE = ("import sys; from storage.sqlite_store import SqliteStore; "
           "store = SqliteStore(sys.argv[1]); store.migrate(); "
           "assert store.migrate(apply=False) == [], 'pending after migrate'")


def test_processes_migrating_one_file_at_once_all_succeed(tmp_path):
    for trial in range(3):
        path = tmp_path / f"race-{trial}.db"
        processes = [subprocess.Popen([sys.executable, "-c", MIGRATE, str(path)], cwd=ROOT, stderr=subprocess.PIPE)
                     for _ in range(4)]
        failures = [p.stderr.read().decode()[-400:] for p in processes if p.wait(timeout=60) != 0]
        for p in processes:
            p.stderr.close()
        assert failures == [], failures
