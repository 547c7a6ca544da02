"""Money and shares on the revenue pages: "1,234.50 EUR", "42.5 %"."""

from decimal import Decimal, InvalidOperation
from typing import Any

from django import template

from .pages_format import NO_VALUE

register = template.Library()


@register.filter
def money(value: Any, currency: str = "") -> str:
    """A decimal string ("1234.5") as "1,234.50" (with the currency when given); None as an en dash."""
    if value is None or value == "":
        return NO_VALUE
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    text = f"{amount:,.2f}"
    return f"{text} {currency}".strip()


@register.filter
def share(value: float | None) -> str:
    """A percentage number (42.53) as "42.5 %"."""
    if value is None:
        return NO_VALUE
    return f"{value:.1f} %"
