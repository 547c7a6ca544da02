"""The base of every analytics read endpoint: authentication, the app lookup, the error shape."""

import uuid
from typing import Any

from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.views import APIView

from apps_registry.models import Application
from ingest.errors import error_body

from ..authentication import READ_AUTHENTICATION
from ..limits import read_slot_acquire, read_slot_release
from ..selectors import application_readable_get


class AnalyticsView(APIView):
    """Session or personal API key; another company's app answers 404 like an unknown one."""

    _read_slot: tuple[int, str] | None = None  # (company id, token) while this request holds a read slot

    authentication_classes = READ_AUTHENTICATION
    permission_classes = [IsAuthenticated]
    # No OPTIONS: the metadata it answers is documented nowhere, and `?format=csv` rendered it as a
    # result table (a 500). Undeclared methods answer 405 (after authentication).
    http_method_names = [method for method in APIView.http_method_names if method != "options"]

    def application(self, request: Request, app_uuid: uuid.UUID) -> Application:
        """The app the reader may see; takes one of its company's read slots (429 when all are taken)."""
        app = application_readable_get(user=request.user, app_uuid=app_uuid)
        if getattr(self, "_read_slot", None) is None:
            token = read_slot_acquire(company_id=app.company_id)
            if token is not None:
                self._read_slot = (app.company_id, token)
        return app

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        self._read_slot = None
        try:
            return super().dispatch(request, *args, **kwargs)
        finally:
            if self._read_slot is not None:
                read_slot_release(company_id=self._read_slot[0], token=self._read_slot[1])


@csrf_exempt  # it changes nothing, and a POST must get the same JSON 404, not the CSRF page
def not_found(request: HttpRequest, *args: object, **kwargs: object) -> JsonResponse:
    """Any other path under the analytics API (e.g. an `app_uuid` that is no uuid): 404 in the one error shape."""
    return JsonResponse(error_body("not_found", "Not found."), status=404)
