"""IAM sync state in the admin (filled in by the IAM sync work): mixins the registry admin uses."""


class RoleSyncAdminMixin:
    """Sync state, policy preview, diff and "sync now" on the role admin."""


class AccountSyncAdminMixin:
    """OIDC provider sync state on the account admin."""
