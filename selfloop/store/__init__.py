"""The state store: the only place with SQL (one SQLite database in WAL mode in the state dir)."""

from selfloop.store.db import DaemonLock, Store, daemon_alive, read_pid_file
from selfloop.store.schema import MIGRATIONS, SCHEMA_VERSION

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "DaemonLock", "Store", "daemon_alive", "read_pid_file"]
