"""Django signals revenue sends, so that readers (analytics' scan) react without revenue importing them."""

from django.dispatch import Signal

# Sent after the commit of an applied import, with `application` and `kind`.
import_applied = Signal()
