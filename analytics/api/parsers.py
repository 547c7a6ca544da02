"""The analytics API's JSON parser: DRF's, with ingest's rule for a body nested too deeply.

DRF's parser lets the decoder's RecursionError (a body nested ~1,000 levels) escape as a 500; ingest
answers the same body 400 `invalid_json`, and so does every analytics endpoint that takes a body.
"""

from typing import Any

from rest_framework.parsers import JSONParser

from ingest.errors import NESTED_TOO_DEEPLY, invalid_json


class JsonBodyParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise invalid_json(NESTED_TOO_DEEPLY) from None
