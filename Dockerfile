# The presence server's one image: web (gunicorn), worker and beat (celery) all run from it.
# docker-compose.yml shows the production shape; docs/operations.md explains it.
FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    DATA_DIR=/app/var

# The processes run as this user; the code stays owned by root, so they cannot change it.
# The home folder is the user's own: gunicorn puts its control socket in ~/.gunicorn/.
RUN groupadd --system --gid 10001 pbx \
 && useradd --system --uid 10001 --gid pbx --create-home --home-dir /home/pbx \
        --shell /usr/sbin/nologin pbx

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY manage.py ./
COPY pbx/ pbx/
COPY domains/ domains/
COPY presence/ presence/
COPY relays/ relays/
COPY api/ api/
COPY templates/ templates/
COPY static/ static/

# Static files are collected into $DATA_DIR/static at build time; WhiteNoise serves them.
# Settings refuse to load without the two keys, so the build uses throw-away ones that exist
# only for this command (they are not kept in the image's environment). The URLs are never
# connected to; they only keep the settings from preparing the embedded SQLite defaults.
# $DATA_DIR itself belongs to the app user: celery beat keeps its schedule file there.
RUN SECRET_KEY=build-only-not-a-secret \
    CALL_STATE_KEY=build-only-not-a-secret \
    DATABASE_URL=postgres://build@127.0.0.1:1/build \
    REDIS_URL=redis://127.0.0.1:1/0 \
    python manage.py collectstatic --noinput -v0 \
 && chown pbx:pbx "$DATA_DIR"

USER pbx
EXPOSE 8000

# Web by default; docker-compose.yml runs the worker, beat and migrations from the same image.
CMD ["gunicorn", "-c", "pbx/gunicorn.conf.py", "pbx.wsgi"]
