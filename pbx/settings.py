"""Settings for the presence server.

Every value comes from an environment variable, documented in the README's settings table.
"""

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from pbx.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("DATA_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)


# Keys without which the servers and workers refuse to start (pbx/startup.py). Settings still
# load without them, so commands that need no key (makemigrations, collectstatic) run anywhere.
MISSING_SECRETS: list[str] = []


def _secret(name: str) -> str:
    value = env_str(name)
    if value:
        return value
    if DEBUG:
        return f"insecure-development-only-{name.lower()}"
    MISSING_SECRETS.append(name)
    return ""  # Django refuses an empty SECRET_KEY where it uses one; see also credentials.py


SECRET_KEY = _secret("SECRET_KEY")
# Former SECRET_KEYs, comma-separated: sessions signed and relay secrets encrypted under them
# stay readable while a new SECRET_KEY takes over (docs/operations.md).
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS")
# Call-state passwords are stored as HMAC-SHA256 under this key, kept outside the database:
# a stolen database dump alone cannot be used to check password guesses offline.
CALL_STATE_KEY = _secret("CALL_STATE_KEY")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "*" if DEBUG else "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
# How many reverse proxies in front of us append to X-Forwarded-For; 0 = use the peer address.
NUM_PROXIES = env_int("NUM_PROXIES", 0)
if NUM_PROXIES:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "pbx.apps.TenantAdminConfig",  # django.contrib.admin on our tenant-scoped site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "domains",
    "presence",
    "relays",
    "api",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served by us: the docs page needs no CDN
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "pbx.middleware.DatabaseUnavailableMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "pbx.urls"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "board_list"
LOGOUT_REDIRECT_URL = "login"
WSGI_APPLICATION = "pbx.wsgi.application"

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

DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'pbx.sqlite3'}"
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    # Web, worker and beat write at once: WAL lets readers run beside the writer, IMMEDIATE
    # takes the write lock up front (no deadlock on lock upgrade), the timeout queues writers.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    # Fail fast when PostgreSQL is down, so call_state.htm answers 503 instead of hanging.
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env_int(
        "DATABASE_CONNECT_TIMEOUT", 3, minimum=1
    )
# call_state.htm prepares its statements once per connection (presence/prepared.py); a pooler
# in transaction mode cannot carry them, so it needs this off.
DATABASE_PREPARED_STATEMENTS = env_bool("DATABASE_PREPARED_STATEMENTS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# The REST API (api/, docs/api.md): JSON in and out, our hashed API tokens, or a session for
# the interactive docs page.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["api.permissions.ApiCaller"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_SCHEMA_CLASS": "api.schema.ApiAutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Presence server API",
    "DESCRIPTION": "Domains, extensions, presence, call history and the event feed. "
    "Guide with examples: docs/api.md.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Separate request and response components, so read-only fields are not asked for.
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "TAGS": [
        {"name": "domains", "description": "The domains (tenants) you may see."},
        {"name": "extensions", "description": "Extensions and their call-state passwords."},
        {"name": "presence", "description": "Calls, availability, the snapshot, the feed."},
        {"name": "history", "description": "Calls as they happened."},
        {"name": "api keys", "description": "Credentials of a domain's integrations."},
    ],
    # One name for the presence states wherever they appear (events, snapshot, call answers).
    "ENUM_NAME_OVERRIDES": {"PresenceStateEnum": "presence.models.STATE_CHOICES"},
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
# Links made from bare domain names (the API's browsable pages) point at https://.
URLIZE_ASSUME_HTTPS = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
if DEBUG:
    STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"
    WHITENOISE_USE_FINDERS = True

# Redis carries the Celery broker and the shared failure counters of call_state.htm.
# Without it, Celery uses a broker on the local file system and the counters are per process.
REDIS_URL = env_str("REDIS_URL")
CELERY_BROKER_URL = REDIS_URL or "filesystem://"
if not REDIS_URL:
    _broker_dir = DATA_DIR / "broker"
    _broker_dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
EXPIRY_SWEEP_INTERVAL = env_int("EXPIRY_SWEEP_INTERVAL", 1, minimum=1)
# Relay deliveries have a queue of their own, so a backlog of them never holds up the expiry
# sweep; a worker started without -Q takes both, a busy site runs one with `-Q relays` too.
CELERY_TASK_QUEUES = (Queue("celery"), Queue("relays"))
CELERY_TASK_ROUTES = {"relays.tasks.deliver": {"queue": "relays"}}

# The board stream process (presence/stream.py) follows the event table this often (seconds).
STREAM_POLL_INTERVAL = env_int("STREAM_POLL_INTERVAL_MS", 200, minimum=10) / 1000
# Where browsers open board streams. Empty: the board's own host on STREAM_PORT, which is how
# `make run` and docker-compose serve it; behind a reverse proxy that routes /stream/ to the
# stream process, set it to the site's address (https://pbx.example.com).
BOARD_STREAM_URL = env_str("BOARD_STREAM_URL")
STREAM_PORT = env_int("STREAM_PORT", 8001, minimum=1)

# Relays (presence out, docs/relays.md).
# Sub-second, so a desk-phone lamp follows a call within a second (docs/sip.md).
RELAYS_DISPATCH_INTERVAL = env_int("RELAYS_DISPATCH_INTERVAL_MS", 250, minimum=50) / 1000
# Webhooks may reach loopback, private and link-local addresses only when this is true.
RELAYS_ALLOW_PRIVATE_TARGETS = env_bool("RELAYS_ALLOW_PRIVATE_TARGETS", False)
RELAYS_HTTP_TIMEOUT = env_int("RELAYS_HTTP_TIMEOUT", 10, minimum=1)
RELAYS_MAX_ATTEMPTS = env_int("RELAYS_MAX_ATTEMPTS", 12, minimum=1)
RELAYS_DELIVERY_RETENTION_DAYS = env_int("RELAYS_DELIVERY_RETENTION_DAYS", 30, minimum=1)


def _base_url(name: str, default: str) -> str:
    value = env_str(name, default).rstrip("/")
    if not value.startswith(("https://", "http://")):
        raise ImproperlyConfigured(f"{name}={value!r} is not an http(s):// URL")
    return value


RELAYS_TEAMS_LOGIN_URL = _base_url("RELAYS_TEAMS_LOGIN_URL", "https://login.microsoftonline.com")
RELAYS_TEAMS_GRAPH_URL = _base_url("RELAYS_TEAMS_GRAPH_URL", "https://graph.microsoft.com")
RELAYS_SLACK_API_URL = _base_url("RELAYS_SLACK_API_URL", "https://slack.com/api")

# call_state.htm: failed attempts allowed per window before 429, per client address and per
# extension. An address serving many extensions (a provider) gets the larger budget.
CALL_STATE_FAILURES_PER_ADDRESS = env_int("CALL_STATE_FAILURES_PER_ADDRESS", 50, minimum=1)
CALL_STATE_FAILURES_PER_EXTENSION = env_int("CALL_STATE_FAILURES_PER_EXTENSION", 10, minimum=1)
CALL_STATE_FAILURE_WINDOW = env_int("CALL_STATE_FAILURE_WINDOW", 300, minimum=1)

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # Django's own console handler would print every line a second time under DEBUG.
    "loggers": {
        "django": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
        # The sweep runs every second: its scheduling and success lines would drown the rest.
        "celery.beat": {"level": "WARNING"},
        "celery.worker.strategy": {"level": "WARNING"},
        "celery.app.trace": {"level": "WARNING"},
    },
}
