"""The base of every analytics read endpoint: authentication, the app lookup, the error shape."""

import uuid

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.views import APIView

from apps_registry.models import Application
from ingest.errors import error_body

from ..authentication import READ_AUTHENTICATION
from ..selectors import application_readable_get


class AnalyticsView(APIView):
    """Session or personal API key; another company's app answers 404 like an unknown one."""

    authentication_classes = READ_AUTHENTICATION
    permission_classes = [IsAuthenticated]
    # No OPTIONS: the metadata it answers is documented nowhere, and `?format=csv` rendered it as a
    # result table (a 500). Undeclared methods answer 405 (after authentication).
    http_method_names = [method for method in APIView.http_method_names if method != "options"]

    def application(self, request: Request, app_uuid: uuid.UUID) -> Application:
        return application_readable_get(user=request.user, app_uuid=app_uuid)


@csrf_exempt  # it changes nothing, and a POST must get the same JSON 404, not the CSRF page
def not_found(request: HttpRequest, *args: object, **kwargs: object) -> JsonResponse:
    """Any other path under the analytics API (e.g. an `app_uuid` that is no uuid): 404 in the one error shape."""
    return JsonResponse(error_body("not_found", "Not found."), status=404)
