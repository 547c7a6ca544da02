"""WSGI entry point, served by granian in `scripts/serve`."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saastracker.settings.dev")
application = get_wsgi_application()
