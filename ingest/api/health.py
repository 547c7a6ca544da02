"""GET /api/v1/ingest/health (to be built in issue 4)."""

from rest_framework.views import APIView


class HealthView(APIView):
    pass
