"""The IAM trust-policy sync, as a one-way package (import-linter holds it to this order).

- ``outcomes`` — what a sync reports: outcome words and :class:`~mappings.iam.outcomes.SyncLine`.
- ``aws_iam`` — the IAM/STS client: the only module that imports boto3 for them.
- ``selectors`` — what a sync reads: a role's policy input (its mappings through the registry's
  one ``Rule`` builder), the desired policy, the account's OIDC providers.
- ``retired`` — roles Rolegate stopped managing: recorded by the registry's writes, emptied by
  :func:`~mappings.iam.retired.retired_roles_sync`.
- ``services`` — what a sync does: :func:`~mappings.iam.services.role_sync` and
  :func:`~mappings.iam.services.account_sync`.
- ``tasks`` — the thin Celery tasks that call those services (task names ``mappings.tasks.*``).
- ``scheduling`` — the only module that knows whether a broker is configured and the only
  importer of the tasks: the registry's writes schedule syncs through it, the admin and
  ``sync_iam`` request one through :func:`~mappings.iam.scheduling.sync_request`.
"""
