# Rolegate's image: the web app (gunicorn, the default command), the Celery worker and beat.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin rolegate

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# Static files are collected at build time: collectstatic is one of the commands that run without
# DJANGO_SECRET_KEY (docs/environment.md#django_secret_key), so no key is baked into a layer.
# The code stays owned by root: the app user can read it, not change it.
RUN python manage.py collectstatic --no-input

USER rolegate
EXPOSE 8000
CMD ["gunicorn", "portal.wsgi:application", "--config", "gunicorn.conf.py", "--bind", "0.0.0.0:8000", "--workers", "2", "--access-logfile", "-"]
