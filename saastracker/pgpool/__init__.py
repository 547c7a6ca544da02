"""Django's PostgreSQL backend with the pool's check of `check.py` (see there why)."""
