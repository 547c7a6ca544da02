"""POST /v1/events (to be built in issue 3)."""

from rest_framework.views import APIView


class V1EventsView(APIView):
    pass
