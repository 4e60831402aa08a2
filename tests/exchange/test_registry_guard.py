"""Deciding on the process's registry snapshot without reading the version first
(docs/architecture.md, "The hot path"): a grant is committed only while the registry is still at
the snapshot's version (the guard in the recording statement, or the check in the credentials
transaction), a refusal only once the version is read unchanged; when the registry moved, the
request decides again on the current registry and nothing of the stale decision -- its token,
its replay row, its event, an STS call -- is answered or written.

A change "made by another process" is one written through the services, which never touch this
process's snapshot (each test checks that it is the very object it was before the change)."""

from __future__ import annotations

from datetime import UTC, datetime

import jwt
import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from exchange import aws_sts, gitlab, keys
from exchange import services as exchange_services
from exchange.models import AuditEvent, UsedToken
from mappings import selectors, services
from mappings.matching import decide
from mappings.models import Issuer, Mapping, RegistryChange, RegistryVersion, Role
from tests.exchange import cases
from tests.exchange.conftest import exchange_params, post_form

TOKEN = "/api/v1/token"
CREDENTIALS = "/api/v1/credentials"

pytestmark = pytest.mark.django_db


@pytest.fixture
def decided_on(monkeypatch) -> list[int]:
    """The registry version of the snapshot each attempt of a request decided on."""
    versions: list[int] = []
    real = exchange_services._verify

    def verify(subject_token, snapshot, trail):
        versions.append(snapshot.version)
        return real(subject_token, snapshot, trail)

    monkeypatch.setattr(exchange_services, "_verify", verify)
    return versions


@pytest.fixture
def minted(monkeypatch) -> list[str]:
    """The jti of every token the exchange signed, handed out or not."""
    jtis: list[str] = []
    real = keys.Signer.token

    def token(self):
        signed = real(self)
        jtis.append(jwt.decode(signed, options={"verify_signature": False})["jti"])
        return signed

    monkeypatch.setattr(keys.Signer, "token", token)
    return jtis


@pytest.fixture
def sts_calls(monkeypatch) -> list[str]:
    """The role of every STS call (answered by a stand-in)."""
    calls: list[str] = []

    def assume(*, role_arn, role_session_name, web_identity_token, duration_seconds):
        calls.append(role_arn)
        return aws_sts.Credentials(
            access_key_id="ASIAEXAMPLEEXAMPLE12",
            secret_access_key="secret",
            session_token="session",
            expiration=datetime(2030, 1, 1, tzinfo=UTC),
        )

    monkeypatch.setattr(aws_sts, "assume_role_with_web_identity", assume)
    return calls


def snapshot_held() -> selectors._Snapshot:
    """This process's snapshot, built now as a running process holds one."""
    selectors.registry()
    assert selectors._cached is not None
    return selectors._cached


def web_main_mapping() -> dict:
    return {
        "name": "web-main-deploy",
        "issuer": Issuer.objects.get(name=cases.ISSUER_NAME),
        "role": Mapping.objects.get(name="web-main-deploy").role,
        "project": "platform/web",
        "ref": "main",
        "ref_type": "branch",
        "protected": True,
    }


def remove_mapping() -> None:
    services.registry_delete(Mapping.objects.get(name="web-main-deploy"), actor="another process")


def remove_audience() -> None:
    issuer = Issuer.objects.get(name=cases.ISSUER_NAME)
    services.registry_update(issuer, actor="another process", audiences=["https://elsewhere.example.com"])


def post(api, stand_in, claims, path=TOKEN, role_arn=cases.DEPLOY_WEB, **overrides):
    return post_form(api, path, exchange_params(stand_in.mint(stand_in.claims(claims, **overrides)), role_arn))


def the_event(response) -> AuditEvent:
    """The request's one audit event."""
    [event] = AuditEvent.objects.filter(request_id=response["X-Request-ID"])
    return event


def answered_jti(response) -> str:
    return jwt.decode(response.json()["access_token"], options={"verify_signature": False})["jti"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [(remove_mapping, "no_matching_mapping"), (remove_audience, "wrong_audience")],
    ids=["a mapping removed", "an issuer audience removed"],
)
def test_a_grant_the_registry_has_moved_away_from_is_decided_again_and_refused(
    api, registry, stand_in, web_main_claims, decided_on, minted, change, reason
):
    """The stale snapshot grants, its token is minted, the statement finds the registry moved:
    nothing written, the token thrown away; the request decides again and is refused."""
    held = snapshot_held()
    change()
    assert selectors._cached is held  # the change did not reach this process's snapshot
    response = post(api, stand_in, web_main_claims)
    assert response.status_code == 400, response.json()
    assert "access_token" not in response.json()
    assert the_event(response).reason == reason
    assert decided_on == [held.at.version, held.at.version + 1]
    [stale] = minted  # minted on the stale snapshot, never handed out, recorded nowhere
    assert not AuditEvent.objects.filter(minted_jti=stale).exists()
    assert not AuditEvent.objects.filter(outcome="granted").exists()
    assert not UsedToken.objects.exists()


def test_a_refusal_the_registry_has_moved_away_from_is_decided_again_and_granted(
    api, registry, stand_in, web_main_claims, decided_on, minted
):
    """The stale snapshot has no mapping for the job: before the refusal is recorded, the version
    is read, has moved, and the request decides again on the registry with the mapping."""
    fields = web_main_mapping()
    remove_mapping()
    held = snapshot_held()
    services.mapping_create(actor="another process", **fields)
    assert selectors._cached is held
    response = post(api, stand_in, web_main_claims)
    assert response.status_code == 200, response.json()
    assert decided_on == [held.at.version, held.at.version + 1]
    event = the_event(response)
    assert (event.outcome, event.minted_jti) == ("granted", answered_jti(response))
    assert minted == [event.minted_jti]
    assert UsedToken.objects.get().jti == event.jti


def test_a_refusal_on_a_current_snapshot_stands_at_the_cost_of_one_version_read(
    api, registry, stand_in, feature_mr_claims, decided_on, monkeypatch
):
    held = snapshot_held()
    reads: list[selectors.RegistryAt] = []
    real_read = selectors._registry_stamp

    def read():
        reads.append(real_read())
        return reads[-1]

    monkeypatch.setattr(selectors, "_registry_stamp", read)
    response = post(api, stand_in, feature_mr_claims)
    assert response.status_code == 400
    assert the_event(response).reason == "no_matching_mapping"
    assert decided_on == [held.at.version]
    assert reads == [held.at]  # one read of the version, finding it where the decision was made


def test_credentials_never_call_sts_on_a_decision_the_registry_has_moved_away_from(
    api, registry, stand_in, web_main_claims, decided_on, minted, sts_calls
):
    held = snapshot_held()
    remove_mapping()
    assert selectors._cached is held
    refused = post(api, stand_in, web_main_claims, path=CREDENTIALS)
    assert refused.status_code == 400
    assert the_event(refused).reason == "no_matching_mapping"
    assert decided_on == [held.at.version, held.at.version + 1]
    assert minted == [] and sts_calls == []  # the record found the registry moved before signing
    assert not UsedToken.objects.exists()


def test_credentials_decided_again_on_the_current_registry_call_sts_once(
    api, registry, stand_in, web_main_claims, decided_on, minted, sts_calls
):
    held = snapshot_held()
    services.registry_update(
        Mapping.objects.get(name="web-main-deploy"), actor="another process", project="platform/web"
    )  # a change that keeps the grant: the guard still sends the request round again
    response = post(api, stand_in, web_main_claims, path=CREDENTIALS)
    assert response.status_code == 200, response.json()
    assert decided_on == [held.at.version, held.at.version + 1]
    assert sts_calls == [cases.DEPLOY_WEB]
    assert the_event(response).minted_jti == minted[-1]
    assert UsedToken.objects.count() == 1


def test_the_first_use_of_a_pinning_mapping_converges_in_one_more_decision(
    api, registry, stand_in, web_main_claims, decided_on, minted
):
    """Pinning moves the registry: the request decides again on the registry with its pins
    (granted, nothing pinned twice) and the process's snapshot holds them from then on."""
    services.registry_update(Mapping.objects.get(name="web-main-deploy"), actor="tests", pin_identity=True)
    held = snapshot_held()
    first = post(api, stand_in, web_main_claims)
    assert first.status_code == 200, first.json()
    pinned = held.at.version + 1
    assert decided_on == [held.at.version, pinned]
    event = the_event(first)
    # The decision that pinned never reached its record, where the token is signed: one token.
    assert minted == [event.minted_jti] == [answered_jti(first)]
    assert selectors.registry_cached()[1].version == pinned
    decided_on.clear()
    assert post(api, stand_in, web_main_claims).status_code == 200
    assert decided_on == [pinned]
    assert UsedToken.objects.count() == 2


def test_a_request_is_counted_once_by_the_rate_limits_however_often_it_decides(
    api, registry, stand_in, web_main_claims, decided_on, settings
):
    """The project's limit is applied once (a second count would refuse this request with a
    limit of 1) and the client's counter is given back once (not below zero)."""
    settings.ROLEGATE_RATE_LIMIT, settings.ROLEGATE_PROJECT_RATE_LIMIT = 5, 1
    held = snapshot_held()
    services.registry_update(
        Mapping.objects.get(name="web-main-deploy"), actor="another process", project="platform/web"
    )
    response = post(api, stand_in, web_main_claims)
    assert response.status_code == 200, response.json()
    assert len(decided_on) == 2
    window = exchange_services._window()
    assert cache.get(f"rolegate:rate:127.0.0.1:{window}") == 0
    assert cache.get(f"rolegate:project-rate:{cases.ISSUER_NAME}:{web_main_claims['project_id']}:{window}") == 1
    assert held is not selectors._cached


def test_a_registry_without_its_version_row_is_guarded_too(api, registry, stand_in, web_main_claims, decided_on):
    """No version row (rows written around the services): the snapshot is at (0, no stamp) and
    the guard holds while there is still no row; the first write through the services makes one,
    and the next grant is decided again on the registry it leads to."""
    RegistryVersion.objects.all().delete()
    RegistryChange.objects.all().delete()
    held = snapshot_held()
    assert held.at == (0, None)
    assert post(api, stand_in, web_main_claims).status_code == 200
    assert decided_on == [0]
    services.registry_update(Mapping.objects.get(name="web-main-deploy"), actor="another process", protected=True)
    assert selectors._cached is held
    decided_on.clear()
    assert post(api, stand_in, web_main_claims).status_code == 200
    assert decided_on == [0, 1]
    assert AuditEvent.objects.filter(outcome="granted").count() == UsedToken.objects.count() == 2


def registry_moved_by_another_process() -> None:
    with transaction.atomic():
        issuer = Issuer.objects.get(name=cases.ISSUER_NAME)
        services.registry_changed(role_ids=(), changed=[(Issuer, issuer.pk)])


@pytest.mark.parametrize("path", [TOKEN, CREDENTIALS])
def test_a_registry_that_moves_under_every_decision_gets_a_read_first_answer(
    api, registry, stand_in, web_main_claims, decided_on, minted, sts_calls, monkeypatch, path
):
    """Another process writes the registry while each attempt mints: the first two attempts
    find it moved and throw their decision away; the third reads the registry first and records
    without the guard (what every request did before): granted once, one event, one replay row,
    one STS call. The token endpoint signs while its statement is on the database, so each of its
    attempts signs a token that is never handed out; the credentials endpoint signs once its
    transaction found the registry in place, so only the last attempt does. The subject token is
    read once, when the request is admitted: a decision again does not read it again."""
    real = exchange_services._mint
    read_token, reads = gitlab.read_token, []
    monkeypatch.setattr(gitlab, "read_token", lambda token: reads.append(1) or read_token(token))

    def mint_while_the_registry_moves(*args):
        token = real(*args)
        registry_moved_by_another_process()
        return token

    monkeypatch.setattr(exchange_services, "_mint", mint_while_the_registry_moves)
    held = snapshot_held()
    response = post(api, stand_in, web_main_claims, path=path)
    assert response.status_code == 200, response.json()
    assert len(decided_on) == exchange_services.ATTEMPTS == 3
    assert decided_on == [held.at.version, held.at.version + 1, held.at.version + 2]
    assert len(reads) == 1
    event = the_event(response)
    assert event.outcome == "granted" and event.minted_jti == minted[-1]
    assert len(minted) == (3 if path == TOKEN else 1)
    if path == TOKEN:
        assert answered_jti(response) == minted[-1]
    else:
        assert sts_calls == [cases.DEPLOY_WEB]
    assert not AuditEvent.objects.filter(minted_jti__in=minted[:-1]).exists()
    assert UsedToken.objects.count() == 1


def test_a_registry_that_moves_under_every_refusal_gets_a_read_first_refusal(
    api, registry, stand_in, feature_mr_claims, decided_on, monkeypatch
):
    real = exchange_services._decide

    def decide_while_the_registry_moves(*args):
        registry_moved_by_another_process()
        return real(*args)

    monkeypatch.setattr(exchange_services, "_decide", decide_while_the_registry_moves)
    held = snapshot_held()
    response = post(api, stand_in, feature_mr_claims)
    assert response.status_code == 400
    assert the_event(response).reason == "no_matching_mapping"
    assert decided_on == [held.at.version + n for n in (0, 1, 2)]


# --- the property ------------------------------------------------------------------------------


def _web_main() -> Mapping | None:
    return Mapping.objects.filter(name="web-main-deploy").first()


def _restore_web_main() -> None:
    if _web_main() is None:
        role = Role.objects.get(account__name="prod", name="deploy-web")
        issuer = Issuer.objects.get(name=cases.ISSUER_NAME)
        fields = {"project": "platform/web", "ref": "main", "ref_type": "branch", "protected": True}
        services.mapping_create(actor="another process", name="web-main-deploy", issuer=issuer, role=role, **fields)


def _web_main_set(**fields) -> None:
    mapping = _web_main()
    if mapping is not None:
        services.registry_update(mapping, actor="another process", **fields)


def _remove_web_main() -> None:
    mapping = _web_main()
    if mapping is not None:
        services.registry_delete(mapping, actor="another process")


def _audiences(audiences: list[str]) -> None:
    services.registry_update(Issuer.objects.get(name=cases.ISSUER_NAME), actor="another process", audiences=audiences)


def _deploy_web(**fields) -> None:
    services.registry_update(Role.objects.get(name="deploy-web"), actor="another process", **fields)


# Writes as another process makes them: through the services, never touching this process's snapshot.
WRITES = {
    "remove web-main-deploy": _remove_web_main,
    "restore web-main-deploy": _restore_web_main,
    "disable web-main-deploy": lambda: _web_main_set(enabled=False),
    "enable web-main-deploy": lambda: _web_main_set(enabled=True),
    "pin with web-main-deploy": lambda: _web_main_set(pin_identity=True),
    "stop pinning with web-main-deploy": lambda: _web_main_set(pin_identity=False),
    "narrow the issuer's audiences": lambda: _audiences(["https://elsewhere.example.com"]),
    "restore the issuer's audiences": lambda: _audiences([cases.AUDIENCE]),
    "deploy-web without session tags": lambda: _deploy_web(session_tags=False),
    "deploy-web with session tags": lambda: _deploy_web(session_tags=True),
}
# Requests: a persona (with overrides) and the role it asks for.
JOBS = {
    "web main": cases.claims(cases.WEB_MAIN),
    "web main, another project at the path": cases.claims(cases.WEB_MAIN, project_id="99"),
    "feature merge request": cases.claims(cases.FEATURE_MR),
    "api production": cases.claims(cases.API_PROD),
}
ASKED = [cases.DEPLOY_WEB, cases.READONLY, cases.DEPLOY_API, None]
# Each step: maybe a write by another process, then a request of this process.
STEPS = st.lists(
    st.tuples(
        st.one_of(st.none(), st.sampled_from(sorted(WRITES))),
        st.sampled_from(sorted(JOBS)),
        st.sampled_from(ASKED),
    ),
    min_size=1,
    max_size=8,
)


def read_first_answer(claims: dict, role_arn: str | None) -> tuple[str, str | None]:
    """What a decision on the registry as it is now gives (the reason, and the role granted),
    from a snapshot built afresh beside this process's one."""
    current = selectors._built(selectors._registry_stamp()).registry
    issuer = current.issuers_by_url[claims["iss"]]
    if claims["aud"] not in issuer.audiences:
        return "wrong_audience", None
    decision = decide(current, issuer=issuer.name, claims=claims, now=timezone.now(), role_arn=role_arn)
    return decision.reason, decision.role_arn if decision.granted else None


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_any_interleaving_of_changes_and_requests_answers_as_a_read_first_decision(
    api, registry, stand_in, settings, steps
):
    """Whatever another process writes between this process's requests, each request answers
    what a decision on the registry as it is at that moment answers -- refused with the same
    reason, or granted the same role -- with one audit event, a replay row exactly when granted,
    and the token it answers the one its event names."""
    settings.ROLEGATE_PROJECT_RATE_LIMIT = 0
    with transaction.atomic():
        selectors._cached = None
        selectors.registry()
        for write, job, role_arn in steps:
            if write is not None:
                try:
                    with transaction.atomic():
                        WRITES[write]()
                except ValidationError:
                    pass  # refused by a guardrail: nothing changed
            claims = stand_in.claims(JOBS[job])
            expected = read_first_answer(claims, role_arn)
            spent = UsedToken.objects.count()
            response = post_form(api, TOKEN, exchange_params(stand_in.mint(claims), role_arn))
            event = the_event(response)
            assert (event.reason, event.role_arn if event.outcome == "granted" else None) == expected, (write, job)
            if event.outcome == "granted":
                assert response.status_code == 200 and answered_jti(response) == event.minted_jti
                assert UsedToken.objects.count() == spent + 1
            else:
                assert response.status_code == 400 and "access_token" not in response.json()
                assert UsedToken.objects.count() == spent
        transaction.set_rollback(True)
    selectors._cached = None


def test_each_decision_made_again_is_counted_for_the_operators(api, registry, stand_in, web_main_claims):
    """``rolegate_exchange_redecisions_total``: one for the request that found the registry moved,
    none for the requests on a current snapshot before and after it."""
    from prometheus_client import REGISTRY

    def redecisions() -> float:
        return REGISTRY.get_sample_value("rolegate_exchange_redecisions_total", {"endpoint": "token"}) or 0.0

    assert post(api, stand_in, web_main_claims).status_code == 200
    before = redecisions()
    assert post(api, stand_in, web_main_claims).status_code == 200
    assert redecisions() == before
    remove_audience()
    assert post(api, stand_in, web_main_claims).status_code == 400
    assert redecisions() == before + 1
    assert post(api, stand_in, web_main_claims).status_code == 400
    assert redecisions() == before + 1


def test_a_snapshot_another_thread_already_refreshed_is_not_refreshed_again(registry, monkeypatch):
    """Several threads of one process find the registry moved at once: the first refreshes the
    snapshot; the others take it as it is (their next commit checks it) instead of refreshing
    it again, one after another under the lock."""
    held = snapshot_held()
    remove_mapping()
    refreshed, at = selectors.registry_refreshed(held.at)  # the first thread
    assert at.version == held.at.version + 1
    monkeypatch.setattr(selectors, "_refreshed", lambda *args: pytest.fail("refreshed twice"))
    assert selectors.registry_refreshed(held.at) == (refreshed, at)  # the others
