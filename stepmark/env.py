"""Settings read from the environment through helpers that fail loudly.

Every helper names the variable it read and what it expected, so a typo in a
deployment is an error at start-up, not a silent default.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_MISSING = object()


def env_str(name: str, default: str | object = _MISSING) -> str:
    value = os.environ.get(name)
    if value is None or value == "":
        if default is _MISSING:
            raise ImproperlyConfigured(f"environment variable {name} is required but not set")
        return default  # type: ignore[return-value]
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"environment variable {name}={raw!r} is not a boolean (use true/false, 1/0)")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"environment variable {name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"environment variable {name}={value} must be at least {minimum}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"environment variable {name}={raw!r} is not a number") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"environment variable {name}={value} must be at least {minimum}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [part.strip() for part in raw.split(",") if part.strip()]


def env_path(name: str, default: Path) -> Path:
    raw = os.environ.get(name)
    return Path(raw).expanduser().resolve() if raw else default


def database_from_url(url: str, *, name: str = "DATABASE_URL") -> dict:
    """Django DATABASES entry from `postgres://user:pass@host:port/db` (`?host=/dir` for a unix socket).

    Stepmark runs on PostgreSQL only: any other scheme is refused here, at start-up.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ImproperlyConfigured(
            f"{name}={url!r}: Stepmark runs on PostgreSQL only (scheme {scheme!r} is not supported); give a "
            "postgres://user:pass@host:port/db URL, or leave it unset to use the embedded server ./run.sh starts"
        )
    database = unquote(parts.path.lstrip("/"))
    if not database:
        raise ImproperlyConfigured(f"{name}={url!r}: PostgreSQL URL needs a database name")
    options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    # libpq's own spelling of a socket folder (postgres://user@/db?host=/run/pg) is Django's HOST.
    host = parts.hostname or options.pop("host", "")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": database,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(parts.port or ""),
        "CONN_MAX_AGE": 60,
        "OPTIONS": options,
    }


def database_url(settings_dict: dict) -> str:
    """The URL of a DATABASES entry, as `database_from_url` reads it (for child processes)."""
    credentials = quote(settings_dict["USER"] or "", safe="")
    if settings_dict.get("PASSWORD"):
        credentials += ":" + quote(settings_dict["PASSWORD"], safe="")
    host, port = settings_dict.get("HOST") or "", settings_dict.get("PORT") or ""
    name = quote(settings_dict["NAME"], safe="")
    if host.startswith("/"):
        return f"postgres://{credentials}@/{name}?host={quote(host, safe='/')}"
    return f"postgres://{credentials}@{host or '127.0.0.1'}:{port or 5432}/{name}"


def env_servers(name: str) -> dict[str, dict[str, str]]:
    """A JSON object of servers, `{"name": {"base_url": "http://...", "model": "..."}}`; {} when unset.

    The operator's list of the only servers workers may call: forms choose among them by name.
    """
    import json

    raw = os.environ.get(name, "").strip()
    if not raw:
        return {}
    try:
        servers = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(f"environment variable {name} is not JSON: {exc}") from None
    if not isinstance(servers, dict):
        raise ImproperlyConfigured(f'environment variable {name} must be a JSON object {{"name": {{...}}}}')
    for server_name, entry in servers.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("model"), str) or not entry["model"]:
            raise ImproperlyConfigured(f"{name}[{server_name!r}] needs a 'model' (the served model name)")
        url = entry.get("base_url")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise ImproperlyConfigured(f"{name}[{server_name!r}] needs an http(s) 'base_url', got {url!r}")
        unknown = set(entry) - {"base_url", "model", "api_key"}
        if unknown:
            raise ImproperlyConfigured(f"{name}[{server_name!r}] has unknown keys {sorted(unknown)}")
    return servers
