"""Wire formats of the ingest protocols: strict parsing and validation, one module per protocol."""
