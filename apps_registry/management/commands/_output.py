"""Shared output for the credential commands: one JSON object with --json, readable lines without."""

import json


def emit(command, payload: dict, *, as_json: bool, title: str) -> None:
    if as_json:
        command.stdout.write(json.dumps(payload, default=str))
        return
    command.stdout.write(command.style.SUCCESS(title))
    width = max(len(k) for k in payload)
    for key, value in payload.items():
        command.stdout.write(f"  {key.ljust(width)}  {value}")
    command.stdout.write("Secrets and keys above are shown once; they cannot be displayed again.")
