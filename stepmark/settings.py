"""Stepmark settings. Every deployment knob is an environment variable (see README)."""

from __future__ import annotations

from pathlib import Path

from stepmark.env import database_from_url, env_bool, env_float, env_int, env_list, env_path, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = env_path("STEPMARK_VAR_DIR", BASE_DIR / "var")

DEBUG = env_bool("DEBUG", False)
# Production (docker-compose sets STEPMARK_PRODUCTION) must bring its own key and database;
# the embedded default runs with a fixed development key on the embedded PostgreSQL.
PRODUCTION = env_bool("STEPMARK_PRODUCTION", False)
SECRET_KEY = env_str("SECRET_KEY") if PRODUCTION else env_str("SECRET_KEY", "dev-insecure-stepmark-key")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "template_partials",
    "django_celery_beat",
    "annotation",
    "prm",
    "workers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "workers.middleware.QueueUnavailableMiddleware",
]

ROOT_URLCONF = "stepmark.urls"
WSGI_APPLICATION = "stepmark.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# PostgreSQL only. Without DATABASE_URL: the embedded server ./run.sh starts (its unix socket in var/pgdata).
EMBEDDED_DATABASE_URL = f"postgres://postgres@/stepmark?host={VAR_DIR / 'pgdata'}"
DATABASES = {
    "default": database_from_url(
        env_str("DATABASE_URL") if PRODUCTION else env_str("DATABASE_URL", EMBEDDED_DATABASE_URL)
    ),
}
if env_bool("DATABASE_PREPARED_STATEMENTS", True):
    # Server-side parameters let psycopg prepare a query after a few runs on a connection: the
    # label save's joins cost more to plan than to run. Off behind a transaction-mode pooler.
    DATABASES["default"]["OPTIONS"].setdefault("server_side_binding", True)
    DATABASES["default"]["OPTIONS"].setdefault("prepare_threshold", 2)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env_path("STATIC_ROOT", VAR_DIR / "staticfiles")
MEDIA_URL = "media/"
MEDIA_ROOT = env_path("MEDIA_ROOT", VAR_DIR / "media")
# Uploaded imports (jsonl, zip) can be large; stream them to disk instead of memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 8 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024 * 1024

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

# Images: refuse anything larger than these (decompression bombs, accidental raw scans).
STEPMARK_MAX_IMAGE_BYTES = env_int("STEPMARK_MAX_IMAGE_BYTES", 32 * 1024 * 1024, minimum=1)
STEPMARK_MAX_IMAGE_PIXELS = env_int("STEPMARK_MAX_IMAGE_PIXELS", 64_000_000, minimum=1)
STEPMARK_MAX_STEPS = env_int("STEPMARK_MAX_STEPS", 12, minimum=1)
STEPMARK_TOKEN_CACHE_SECONDS = env_float("STEPMARK_TOKEN_CACHE_SECONDS", 2.0, minimum=0)
STEPMARK_CHUNK_LEASE_SECONDS = env_int("STEPMARK_CHUNK_LEASE_SECONDS", 600, minimum=1)
# How often beat's reaper re-sends chunks of dead workers and chunks the broker never got.
STEPMARK_REAPER_INTERVAL_SECONDS = env_int(
    "STEPMARK_REAPER_INTERVAL_SECONDS", max(1, min(60, STEPMARK_CHUNK_LEASE_SECONDS // 2)), minimum=1
)
STEPMARK_PRM_DIR = env_path("STEPMARK_PRM_DIR", MEDIA_ROOT / "prm")
STEPMARK_PRM_PROMOTION_MARGIN = env_float("STEPMARK_PRM_PROMOTION_MARGIN", 0.01)
# The backbone the training form offers first; ./run.sh builds a tiny local one here (random weights).
STEPMARK_DEFAULT_BACKBONE = env_path("STEPMARK_DEFAULT_BACKBONE", VAR_DIR / "models" / "tiny-qwen2-vl")
STEPMARK_DEMO_DATA_DIR = env_path("STEPMARK_DEMO_DATA_DIR", BASE_DIR.parent / "shared" / "data")

REST_FRAMEWORK = {
    # Token first: API clients send it on every call and then never touch the session.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "stepmark.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "stepmark.negotiation.JsonFirstContentNegotiation",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Stepmark API",
    "DESCRIPTION": "Step-level labels for multimodal reasoning: projects, items, labels, imports, exports.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# Celery: Redis in production; the README's run command sets an embedded broker.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", "") or None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Publishing to a broker that is down fails within about a second, for the page to say so.
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 2.0, minimum=0.1)
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
if CELERY_BROKER_URL.startswith(("redis://", "rediss://", "unix://")):
    # Redis re-delivers a message a killed worker left unacknowledged after this long. Twice the
    # lease: sooner, the claim still holds, the redelivery is refused and only the reaper brings it back.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 2 * STEPMARK_CHUNK_LEASE_SECONDS}
elif CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded broker of ./run.sh: messages are files under var/broker, no service needed.
    _BROKER_DIR = VAR_DIR / "broker"
    for _sub in ("out", "processed", "control"):
        (_BROKER_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_BROKER_DIR / "out"),
        "data_folder_out": str(_BROKER_DIR / "out"),
        "data_folder_processed": str(_BROKER_DIR / "processed"),
        "store_processed": False,
        "control_folder": str(_BROKER_DIR / "control"),
    }

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
