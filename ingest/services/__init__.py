"""Writes of the ingest app: storing events durably, one module per protocol."""
