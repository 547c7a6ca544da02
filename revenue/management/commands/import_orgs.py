"""import_orgs --app UUID FILE [--dry-run] [--json]: upsert customer organizations from a CSV."""

from ...models import Import
from ._import import ImportCommand


class Command(ImportCommand):
    help = "Import customer organizations (external_org_id,display_name); exits 1 when the file has errors."
    kind = Import.Kind.ORGANIZATIONS
