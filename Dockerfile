# One image for web and worker: `scripts/serve` (granian WSGI) by default, `scripts/worker` for Celery.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=saastracker.settings.prod \
    PORT=8000

WORKDIR /app

# Dependencies first so code changes reuse this layer. All pinned; every package ships a manylinux wheel.
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY . .

# Static files are baked into the image (served by WhiteNoise). collectstatic needs no real secrets,
# but the prod settings refuse to load without them, so throwaway values are given for this step only.
RUN SECRET_KEY=collectstatic-only \
    FIELD_ENCRYPTION_KEY=ZmFrZS1rZXktZm9yLWNvbGxlY3RzdGF0aWMtb25seSE= METRICS_TOKEN=collectstatic-only \
    python manage.py collectstatic --noinput -v 0 \
 && useradd --system --uid 10001 --create-home --home-dir /home/app app \
 && chmod +x scripts/*

USER app
EXPOSE 8000

# Liveness: the process answers. Route traffic on /readyz instead (see README, "Probes").
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import os, sys, urllib.request; sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\", \"8000\")}/livez', timeout=4).status != 200)"

CMD ["scripts/serve"]
