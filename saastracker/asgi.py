"""ASGI entry point (unused by default; the WSGI path is the measured one)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saastracker.settings.dev")
application = get_asgi_application()
