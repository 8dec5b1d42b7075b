"""Stepmark settings. Every deployment knob is an environment variable (see README)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from stepmark.env import (
    database_from_url,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_path,
    env_servers,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = env_path("STEPMARK_VAR_DIR", BASE_DIR / "var")

DEBUG = env_bool("DEBUG", False)
# Production (docker-compose sets STEPMARK_PRODUCTION) must bring its own key, hosts and database;
# the embedded default runs with a fixed development key on the embedded PostgreSQL.
PRODUCTION = env_bool("STEPMARK_PRODUCTION", False)
DEVELOPMENT_SECRET_KEY = "dev-insecure-stepmark-key"
SECRET_KEY = env_str("SECRET_KEY") if PRODUCTION else env_str("SECRET_KEY", DEVELOPMENT_SECRET_KEY)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
if PRODUCTION:
    if SECRET_KEY == DEVELOPMENT_SECRET_KEY or len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
        raise ImproperlyConfigured(
            "SECRET_KEY: production needs its own random key of at least 50 characters, not the development one "
            "(python -c 'import secrets; print(secrets.token_urlsafe(50))')"
        )
    if "testserver" in ALLOWED_HOSTS or "*" in ALLOWED_HOSTS:
        raise ImproperlyConfigured("ALLOWED_HOSTS: name the site's real host names (not 'testserver' or '*') in production")
    if DEBUG:
        raise ImproperlyConfigured("DEBUG must be off in production (STEPMARK_PRODUCTION=true)")
    # Behind a TLS-terminating proxy that sets X-Forwarded-Proto (name another header, or none, here).
    _proxy_header = env_str("SECURE_PROXY_SSL_HEADER", "HTTP_X_FORWARDED_PROTO")
    SECURE_PROXY_SSL_HEADER = (_proxy_header, "https") if _proxy_header.lower() != "none" else None
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

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
    "drf_spectacular_sidecar",  # Swagger UI served from this site: the docs work offline
    "template_partials",
    "django_celery_beat",
    "axes",
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
    "stepmark.csp.DocumentCSPMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# Every page loads its scripts, styles and fonts from this site (vendored htmx and KaTeX), so the
# policy allows nothing else. KaTeX sets inline style attributes on the math it draws, hence
# 'unsafe-inline' for styles only; images may be data: URLs (KaTeX, previews). Same in every mode,
# so the browser tests run the pages under the policy production sends.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# Login throttling (django-axes): after this many failed logins an account, and separately an
# address, is locked out for the cool-off. API tokens never pass through a login, so they are unaffected.
AUTHENTICATION_BACKENDS = [
    "stepmark.login_throttle.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("STEPMARK_LOGIN_FAILURE_LIMIT", 10, minimum=1)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("STEPMARK_LOGIN_COOLOFF_SECONDS", 15 * 60, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "stepmark.login_throttle.login_locked_out"
AXES_IPWARE_PROXY_COUNT = env_int("STEPMARK_PROXY_COUNT", 0, minimum=0)
AXES_VERBOSE = False

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

# Checked when a person chooses a password: signing up from an invitation, changing their own.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Invitations can be e-mailed: set EMAIL_BACKEND / EMAIL_HOST ... as Django reads them. Without a
# mail server configured the mail goes to the console (the link is shown on the page in any case).
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "stepmark@localhost")

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
# Imports: texts past these are refused naming file, line and field (a 150 MB question helps nobody).
STEPMARK_MAX_QUESTION_CHARS = env_int("STEPMARK_MAX_QUESTION_CHARS", 50_000, minimum=1)
STEPMARK_MAX_STEP_CHARS = env_int("STEPMARK_MAX_STEP_CHARS", 20_000, minimum=1)
# Uploaded zips: the most an archive may unpack to, and the compression ratio past which a large
# member is taken for a zip bomb (real datasets and images stay far below 100:1).
STEPMARK_MAX_UNPACKED_BYTES = env_int("STEPMARK_MAX_UNPACKED_BYTES", 8 * 1024**3, minimum=1)
STEPMARK_MAX_ZIP_RATIO = env_int("STEPMARK_MAX_ZIP_RATIO", 100, minimum=1)
STEPMARK_TOKEN_CACHE_SECONDS = env_float("STEPMARK_TOKEN_CACHE_SECONDS", 2.0, minimum=0)
STEPMARK_CHUNK_LEASE_SECONDS = env_int("STEPMARK_CHUNK_LEASE_SECONDS", 600, minimum=1)
# How often beat's reaper re-sends chunks of dead workers and chunks the broker never got.
STEPMARK_REAPER_INTERVAL_SECONDS = env_int(
    "STEPMARK_REAPER_INTERVAL_SECONDS", max(1, min(60, STEPMARK_CHUNK_LEASE_SECONDS // 2)), minimum=1
)
STEPMARK_PRM_DIR = env_path("STEPMARK_PRM_DIR", MEDIA_ROOT / "prm")
STEPMARK_PRM_PROMOTION_MARGIN = env_float("STEPMARK_PRM_PROMOTION_MARGIN", 0.01)
# How long `POST /api/prm/score/` and `/api/prm/rank/` wait for the gpu worker's answer before they
# answer 202 with the request to poll (0: answer 202 at once).
STEPMARK_SCORING_WAIT_SECONDS = env_float("STEPMARK_SCORING_WAIT_SECONDS", 30.0, minimum=0)
# Scoring requests carry their images (base64): beat deletes those older than this (the 202 poll URL
# answers until then), so the table does not grow with every call.
STEPMARK_SCORING_KEEP_SECONDS = env_int("STEPMARK_SCORING_KEEP_SECONDS", 86400, minimum=60)
# The backbone the training form offers first; ./run.sh builds a tiny local one here (random weights).
STEPMARK_DEFAULT_BACKBONE = env_path("STEPMARK_DEFAULT_BACKBONE", VAR_DIR / "models" / "tiny-qwen2-vl")
# The only policy and judge servers (OpenAI-compatible) a worker may call; forms offer them by name:
# {"qwen": {"base_url": "http://gpu-1:8000/v1", "model": "Qwen2.5-VL-7B", "api_key": "..."}}.
STEPMARK_GENERATION_SERVERS = env_servers("STEPMARK_GENERATION_SERVERS")
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
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # `<id:...>` (stepmark.converters): a bigint key.
    "PATH_CONVERTER_OVERRIDES": {"id": int},
    # The label value requests send (label saves and gold labels share it), and an invitation's
    # state (annotation.api.people), named so that no other `state` field collides with it.
    "ENUM_NAME_OVERRIDES": {
        "LabelValueEnum": "annotation.api.labelling_serializers.LABEL_VALUE_CHOICES",
        "InvitationStateEnum": "annotation.api.people.INVITATION_STATES",
    },
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
    # django-axes logs every login at INFO; lockouts are warnings, and those stay.
    "loggers": {"axes": {"level": "WARNING"}},
}
