"""The base of every analytics read endpoint: authentication, the app lookup, the error shape."""

import uuid

from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.views import APIView

from apps_registry.models import Application

from ..authentication import READ_AUTHENTICATION
from ..selectors import application_readable_get


class AnalyticsView(APIView):
    """Session or personal API key; another company's app answers 404 like an unknown one."""

    authentication_classes = READ_AUTHENTICATION
    permission_classes = [IsAuthenticated]

    def application(self, request: Request, app_uuid: uuid.UUID) -> Application:
        return application_readable_get(user=request.user, app_uuid=app_uuid)
