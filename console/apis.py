"""The platform-team API (docs/api.md#platform-api): audit events and explain, for staff API tokens."""

from __future__ import annotations

from typing import Any

from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from console.admin_views import VIEW_AUDIT, VIEW_MAPPINGS
from console.authentication import StaffApiMixin
from console.explain import UnknownIssuer, explain_claims
from console.iam_check import decision_verdict
from console.selectors import AUDIT_EXACT_FILTERS, audit_event_list
from exchange.audit import AUDIT_FIELDS, audit_event_as_dict
from exchange.models import AuditEvent
from mappings.models import Issuer
from portal.api_errors import ApiError

_ISO = "an ISO 8601 date-time, e.g. 2026-11-26T12:00:00Z"


class AuditEventPagination(CursorPagination):
    ordering = ("-time", "-id")
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000

    def decode_cursor(self, request):
        malformed = ApiError("invalid_request", "The cursor is malformed; use a page's next URL as given.")
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise malformed from None
        # The position is a time of ours, base64'd by DRF; anything else would fail in the query.
        if cursor is not None and cursor.position is not None:
            try:
                if parse_datetime(str(cursor.position)) is None:
                    raise malformed
            except ValueError:
                raise malformed from None
        return cursor

    def get_paginated_response(self, data):
        return Response({"results": data, "next": self.get_next_link()})

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["results", "next"],
            "properties": {
                "results": schema,
                "next": {"type": "string", "format": "uri", "nullable": True},
            },
        }


def _audit_page_schema():
    """The documented shape of a page: the fields of docs/api.md#audit-event-fields, in their order."""
    fields: dict[str, serializers.Field[Any, Any, Any, Any]] = {
        name: serializers.CharField(allow_null=True) for name in AUDIT_FIELDS
    }
    fields["time"] = serializers.DateTimeField()
    fields["request_id"] = serializers.CharField()
    fields["outcome"] = serializers.ChoiceField(choices=AuditEvent.Outcome.values)
    fields["reason"] = serializers.CharField()
    fields["latency_ms"] = serializers.FloatField(allow_null=True)
    event = inline_serializer("AuditEvent", fields)
    return inline_serializer(
        "AuditEventPage",
        {
            "results": serializers.ListField(child=event),
            "next": serializers.URLField(allow_null=True, help_text="The next page, or null on the last page"),
        },
    )


class AuditEventListApi(StaffApiMixin, APIView):
    """Audit events (docs/api.md#audit-events), newest first, cursor-paginated."""

    required_permissions = (VIEW_AUDIT,)

    class FilterSerializer(serializers.Serializer):
        outcome = serializers.ChoiceField(choices=AuditEvent.Outcome.values, required=False)
        since = serializers.DateTimeField(
            required=False, error_messages={"invalid": f"must be {_ISO}"}, help_text="Events at or after."
        )
        until = serializers.DateTimeField(
            required=False, error_messages={"invalid": f"must be {_ISO}"}, help_text="Events before."
        )

    @extend_schema(
        operation_id="audit_events_list",
        parameters=[
            *[OpenApiParameter(name, str, description=f"Exact {name}") for name in AUDIT_EXACT_FILTERS],
            OpenApiParameter("since", str, description=f"Events at or after this time: {_ISO}"),
            OpenApiParameter("until", str, description=f"Events before this time: {_ISO}"),
            OpenApiParameter("cursor", str, description="The cursor from a previous page's next URL"),
            OpenApiParameter("page_size", int, description="1..1000, default 100"),
        ],
        responses={200: _audit_page_schema()},
    )
    def get(self, request):
        params = self.FilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        filters = {name: request.query_params[name] for name in AUDIT_EXACT_FILTERS if name in request.query_params}
        events = audit_event_list(
            filters=filters, since=params.validated_data.get("since"), until=params.validated_data.get("until")
        )
        paginator = AuditEventPagination()
        page = paginator.paginate_queryset(events, request, view=self)
        return paginator.get_paginated_response([audit_event_as_dict(event) for event in page or []])


class ExplainFailureSerializer(serializers.Serializer):
    field = serializers.CharField()
    pattern = serializers.CharField()
    value = serializers.CharField(allow_null=True)


class ExplainMappingSerializer(serializers.Serializer):
    name = serializers.CharField()
    role_arn = serializers.CharField()
    matched = serializers.BooleanField()
    pin_identity = serializers.BooleanField(help_text="The mapping pins GitLab ids on first use")
    failed = ExplainFailureSerializer(many=True, help_text="Every condition the claims fail, in checking order")


class ExplainWarningSerializer(serializers.Serializer):
    mapping = serializers.CharField()
    code = serializers.CharField(help_text="A lint code: wildcard_project_unprotected, untrusted_pipeline_source, ...")
    message = serializers.CharField()


class ExplainPinSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["project", "namespace"])
    path = serializers.CharField(help_text="The token's project_path or namespace_path")
    pinned_id = serializers.CharField(allow_null=True, help_text="The GitLab id pinned for the path; null: none yet")
    pinned_at = serializers.DateTimeField(allow_null=True)
    pinned_by = serializers.CharField(allow_null=True)
    token_id = serializers.CharField(allow_null=True, help_text="The token's project_id or namespace_id")
    matches = serializers.BooleanField(allow_null=True, help_text="null: nothing pinned, or nothing to compare")
    would_pin = serializers.BooleanField(help_text="Granted through a pinning mapping: the exchange would pin it now")


class ExplainIamSerializer(serializers.Serializer):
    role_arn = serializers.CharField()
    mapping = serializers.CharField()
    allowed = serializers.BooleanField(allow_null=True, help_text="null: the policy generator cannot tell (detail)")
    detail = serializers.CharField()
    unchecked = serializers.ListField(
        child=serializers.CharField(), help_text="The mapping's conditions IAM cannot check (Rolegate's matcher does)"
    )


class ExplainApi(StaffApiMixin, APIView):
    """Would a job with these claims get a role, and if not, why? The exchange's own matcher.
    Needs what the explain page needs."""

    required_permissions = (VIEW_MAPPINGS,)

    @extend_schema_serializer(component_name="ExplainRequest")
    class InputSerializer(serializers.Serializer):
        issuer = serializers.CharField(help_text="A registered issuer's name")
        claims = serializers.DictField(help_text="GitLab ID token claims, as the job's token carries them")
        role_arn = serializers.CharField(required=False, allow_null=True, allow_blank=True)

    @extend_schema_serializer(component_name="ExplainResponse")
    class OutputSerializer(serializers.Serializer):
        decision = serializers.ChoiceField(choices=AuditEvent.Outcome.choices)
        reason = serializers.CharField(help_text="granted or the exchange's denial code")
        detail = serializers.CharField()
        mapping = serializers.CharField(allow_null=True)
        role_arn = serializers.CharField(allow_null=True)
        mappings = ExplainMappingSerializer(many=True)
        warnings = ExplainWarningSerializer(
            many=True, help_text="Lint warnings about the listed mappings: risky but legal, or granting nothing"
        )
        pins = ExplainPinSerializer(
            many=True, help_text="The identity pins of the token's project and namespace paths, and whether they match"
        )
        iam = ExplainIamSerializer(
            allow_null=True,
            help_text="Would IAM allow the token under the role's generated trust policy? "
            "null when no managed role is in question",
        )

    @extend_schema(operation_id="explain", request=InputSerializer, responses={200: OutputSerializer})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            explanation = explain_claims(
                issuer=data.validated_data["issuer"],
                claims=data.validated_data["claims"],
                role_arn=data.validated_data.get("role_arn") or None,
            )
        except UnknownIssuer as exc:
            raise ApiError("invalid_request", str(exc)) from None
        verdict = decision_verdict(
            issuer=Issuer.objects.get(name=data.validated_data["issuer"]),
            claims=data.validated_data["claims"],
            explanation=explanation,
        )
        return Response(self.OutputSerializer({**explanation.as_dict(), "iam": verdict}).data)
