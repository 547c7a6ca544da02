"""Security headers of the pages: a strict Content-Security-Policy and no caching of customer data.

Django's own middleware already sends `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff`,
`Referrer-Policy: same-origin` and `Cross-Origin-Opener-Policy: same-origin`. The pages load only
scripts and styles this project serves (no inline script, no eval), so the policy can forbid the rest.
"""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

PAGES_PREFIX = "/app/"
# The analytics API answers customer data too: no shared cache (a proxy, a CDN) may keep a copy.
API_PREFIX = "/api/v1/analytics/"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"


Handler = Callable[[HttpRequest], HttpResponse]


def content_security_policy(get_response: Handler) -> Handler:
    """Add the pages' headers to every answer under `/app/`, and `no-store` to the analytics API's."""

    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        if request.path.startswith(API_PREFIX):
            response.headers.setdefault("Cache-Control", "private, no-store")
        elif request.path.startswith(PAGES_PREFIX):
            response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
            response.headers.setdefault("Cache-Control", "private, no-store")
        return response

    return middleware
