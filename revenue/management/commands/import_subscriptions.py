"""import_subscriptions --app UUID FILE [--dry-run] [--json]: replace the app's subscriptions snapshot."""

from ...models import Import
from ._import import ImportCommand


class Command(ImportCommand):
    help = "Import the subscriptions snapshot (replaces every subscription of the app); exits 1 on errors."
    kind = Import.Kind.SUBSCRIPTIONS
