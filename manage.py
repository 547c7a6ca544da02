#!/usr/bin/env python
"""Django's command-line utility."""

import os
import sys
from pathlib import Path

DEV_SETTINGS = "saastracker.settings.dev"
EMBEDDED = Path(__file__).resolve().parent / ".embedded"


def embedded_trap() -> str | None:
    """Why a bare `manage.py` must not run here, or None.

    After `scripts/dev` the data lives in the embedded PostgreSQL under `.embedded/`, but the dev
    settings' default DATABASE_URL is the machine's own server on 5432: a bare command would fail
    there, or worse, quietly use some other database of that name.
    """
    if not EMBEDDED.is_dir() or os.environ.get("DATABASE_URL"):
        return None
    if os.environ.get("DJANGO_SETTINGS_MODULE", DEV_SETTINGS) != DEV_SETTINGS:
        return None
    args = " ".join(sys.argv[1:]) or "help"
    return (
        f"manage.py: this checkout runs the embedded dev stack ({EMBEDDED}) and DATABASE_URL is not set,\n"
        "so this command would use the machine's PostgreSQL on 127.0.0.1:5432, not the dev stack's.\n"
        f"  Run it against the dev stack:       scripts/dev manage {args}\n"
        "  Or choose a database explicitly:    DATABASE_URL=postgresql://... python manage.py ...\n"
    )


def main() -> None:
    trap = embedded_trap()
    if trap:
        sys.stderr.write(trap)
        sys.exit(2)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", DEV_SETTINGS)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
