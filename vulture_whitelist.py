"""Names vulture cannot see used: Django, DRF, Celery, mozilla-django-oidc and pytest call them by
convention, by a dotted string in settings or by a name in a template. Read by ``vulture`` only
(``make lint``; [tool.vulture] in pyproject.toml); never imported.

Decorated functions (admin displays and actions, tasks, signal receivers, template tags, pytest
fixtures) are left out by ``ignore_decorators`` there, not listed here. Add a name only for such
a convention, with the reason; dead code is deleted, not listed.
"""

_ = object()

# Django: app configs, models' Meta, management commands, URL and WSGI modules.
_.Meta
_.abstract
_.default_auto_field
_.ready
_.Command
_.help
_.handle
_.add_arguments
_.options  # handle(self, *args, **options): Django's signature
_.urlpatterns
_.application

# gunicorn: the worker class named by a dotted string in gunicorn.conf.py and on command lines.
_.RolegateWorker

# Django: classes named in portal/settings.py by a dotted string (settings are not scanned).
_.MappingsConfig
_.ExchangeConfig
_.ConsoleConfig
_.AlertsConfig
_.RequestIdMiddleware
_.ProbeMiddleware
_.MetricsMiddleware
_.ExchangeApiMiddleware
_.LocalBackend  # AUTHENTICATION_BACKENDS
_.login_options  # a context processor
_.request_client_ip  # AXES_CLIENT_IP_CALLABLE
_.logging_config  # LOGGING
_.AlwaysSafeExceptionReporterFilter  # DEFAULT_EXCEPTION_REPORTER_FILTER
_.registry_warm  # portal/wsgi.py, by import_string (portal imports no app)

# Django: model fields and choices read by column name (admin, exports, queries by keyword).
_.created_at
_.activated_at
_.retired_at
_.namespace_path
_.pipeline_id
_.deployment_tier
_.provider_error
_.BRANCH
_.TAG
_.is_live  # Mapping.is_live: templates/console/ci_snippets.html

# Django admin: options and hooks ModelAdmin, filters and forms read.
_.list_display
_.list_filter
_.list_select_related
_.list_per_page
_.search_fields
_.search_help_text
_.ordering
_.date_hierarchy
_.inlines
_.show_change_link
_.show_full_result_count
_.change_list_template
_.constraints
_.indexes
_.error_messages
_.widget
_.site_header
_.site_title
_.index_title
_.get_fields
_.save_model
_.save_formset
_.delete_model
_.delete_queryset
_.has_add_permission
_.has_delete_permission
_.lookups
_.parameter_name
_.field_choices
_.prepare_value
_.config_file  # ReplayForm's upload field, read from cleaned_data by name
_.namespace_id  # ExplainForm's field, read from cleaned_data by name
_.has_accept_permission  # an admin action's permissions=["accept"]: the admin calls has_accept_permission
_.modeladmin  # an admin action's signature
_.indentless  # yaml's Dumper.increase_indent signature

# DRF and drf-spectacular: view, pagination, permission, authentication and schema hooks.
_.authentication_classes
_.permission_classes
_.parser_classes
_.throttle_classes
_.metadata_class
_.renderer_classes
_.has_permission
_.authenticate_header
_.page_size
_.page_size_query_param
_.max_page_size
_.get_paginated_response_schema
_.BearerTokenScheme  # registered by subclassing OpenApiAuthenticationExtension
_.target_class
_.get_security_definition
_.auto_schema  # get_security_definition(self, auto_schema)
# Serializer fields: the names of the fields in a request or a response.
_.subject_token_type
_.requested_token_type
_.issued_token_type
_.token_type
_.Version
_.AccessKeyId
_.SecretAccessKey
_.SessionToken
_.Expiration
_.pinned_id  # explain's pins

# Celery task options.
_.retry_backoff_max
_.ignore_result

# mozilla-django-oidc: settings read off the backend and views, and the methods it calls.
_.get_settings
_.OIDC_OP_AUTH_ENDPOINT
_.OIDC_OP_TOKEN_ENDPOINT
_.OIDC_OP_USER_ENDPOINT
_.OIDC_RP_IDP_SIGN_KEY
_.retrieve_matching_jwk
_.get_or_create_user
_.login_failure

# prometheus-client: a custom collector's collect().
_.collect

# socketserver: the address family a server class binds with (portal.worker_metrics, IPv6).
_.address_family

# urllib3: the connection class a pool builds, the pool classes a PoolManager picks by scheme.
_.ConnectionCls
_.pool_classes_by_scheme

# pytest and the tests' stand-in servers: module marks, fixtures requested by argument, hooks,
# factory_boy options and http.server's handler methods.
_.pytestmark
_.pytest_runtest_makereport
_.pytest_xdist_make_scheduler  # tests/conftest.py: the suite's xdist scheduler
_._split_scope  # tests/scheduling.py: xdist's LoadScopeScheduling calls it
_.moto_aws
_.aws_env
_.transactional_db
_.traffic
_.eager_retries
_.django_get_or_create
_.do_GET
_.do_POST
_.do_PUT
_.log_message
_.daemon_threads
_.CACHES  # override_settings(CACHES=...)
_.SECURE_SSL_REDIRECT  # set through the settings fixture; Django's SecurityMiddleware reads it
