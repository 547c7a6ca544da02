"""POST /api/v1/ingest/events and /identify (to be built in issue 4)."""

from rest_framework.views import APIView


class SdkEventsView(APIView):
    pass


class SdkIdentifyView(APIView):
    pass
