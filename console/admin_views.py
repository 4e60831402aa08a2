"""Staff-only admin pages: the dashboard, explain/simulate and replay (wrapped by admin_view).

Each also needs the model permission of what it shows: the audit log (dashboard, replay) or the
registry (explain). Superusers have every permission.
"""

from __future__ import annotations

from typing import cast

from django.contrib import admin
from django.contrib.auth.decorators import permission_required
from django.http import QueryDict
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters

from console import charts, iam_check
from console.dashboard import dashboard_data
from console.explain import explain_claims
from console.forms import ExplainForm, ReplayForm
from console.replay import (
    MAX_REPLAY_EVENTS,
    ReplayUnavailable,
    proposed_registry,
    replay_events,
    replayable_events,
)
from mappings.claims import EXPLAINED

REPLAY_SHOWN = 500
VIEW_AUDIT = "exchange.view_auditevent"
VIEW_MAPPINGS = "mappings.view_mapping"


def _context(request, title: str, **extra) -> dict:
    return {**admin.site.each_context(request), "title": title, **extra}


@permission_required(VIEW_AUDIT, raise_exception=True)
def dashboard(request):
    data = dashboard_data()
    return TemplateResponse(
        request,
        "console/dashboard.html",
        _context(
            request,
            "Dashboard",
            data=data,
            per_day_chart=charts.stacked_days(data.days, title="Exchanges per day, granted and denied"),
            reasons_chart=charts.horizontal_bars(
                data.top_denial_reasons, title="Top denial reasons", color=charts.DENIED
            ),
            projects_chart=charts.horizontal_bars(
                [(p, g + d) for p, g, d in data.top_projects], title="Top projects (exchanges)"
            ),
            roles_chart=charts.horizontal_bars(data.top_roles, title="Top roles (granted)", color=charts.GRANTED),
        ),
    )


@never_cache
@sensitive_post_parameters("token")  # kept out of error reports
@permission_required(VIEW_MAPPINGS, raise_exception=True)
def explain(request):
    result = None
    if request.method == "POST":
        form = ExplainForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            role_arn = data.get("role_arn") or None
            now = timezone.now()
            explanation = explain_claims(
                issuer=data["issuer_obj"].name, claims=data["claims"], role_arn=role_arn, now=now
            )
            result = {
                "explanation": explanation,
                "claims": {k: v for k, v in data["claims"].items() if k in EXPLAINED},
                "iam": iam_check.trust_policy_verdicts(
                    issuer=data["issuer_obj"], claims=data["claims"], explanation=explanation
                ),
            }
        # Never echo a pasted token back into the page.
        data = cast(QueryDict, form.data).copy()  # a bound form's POST data
        data["token"] = ""
        form.data = data
    else:
        # Prefilled from a link (an audit event's "explain this job"); nothing runs until submitted.
        form = ExplainForm(initial={k: v for k, v in request.GET.items() if k != "token"})
    return TemplateResponse(
        request, "console/explain.html", _context(request, "Explain / simulate", form=form, result=result)
    )


@never_cache
@permission_required([VIEW_AUDIT, VIEW_MAPPINGS], raise_exception=True)
def replay(request):
    result = None
    if request.method == "POST":
        form = ReplayForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                registry = proposed_registry(form.cleaned_data["config"])
            except ReplayUnavailable as exc:
                for error in exc.errors:
                    form.add_error(None, error)
            else:
                days = form.cleaned_data["days"]
                replayed = 0

                def counted(events):
                    nonlocal replayed
                    for event in events:
                        replayed += 1
                        yield event

                changes = replay_events(registry=registry, events=counted(replayable_events(days=days)))
                result = {
                    "changes": changes[:REPLAY_SHOWN],
                    "total": len(changes),
                    "days": days,
                    "replayed": replayed,
                    "capped": replayed >= MAX_REPLAY_EVENTS,
                }
    else:
        form = ReplayForm()
    return TemplateResponse(
        request, "console/replay.html", _context(request, "Replay a configuration", form=form, result=result)
    )
