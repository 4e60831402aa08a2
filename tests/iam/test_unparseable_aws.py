"""Every operator command ends with one line, whatever the AWS library raises.

A real local HTTP server answers 500 with a body botocore cannot parse (it raises
``ResponseParserError``, which is not a ``BotoCoreError``) as the IAM endpoint.
"""

from __future__ import annotations

import pytest
from botocore.parsers import ResponseParserError
from django.core.management import execute_from_command_line

from mappings.aws_errors import AwsTransientError, classify
from mappings.iam import aws_iam
from tests.chaos.stand_ins import GarbageServer
from tests.iam.helpers import registry

pytestmark = pytest.mark.django_db


@pytest.fixture
def garbage_iam(aws_env, monkeypatch):
    server = GarbageServer(status=500)
    monkeypatch.setenv("AWS_ENDPOINT_URL_IAM", server.url)
    aws_iam.reset_clients()
    yield server
    server.stop()
    aws_iam.reset_clients()


def manage(*argv: str) -> int:
    with pytest.raises(SystemExit) as exited:
        execute_from_command_line(["manage.py", *argv])
    return exited.value.code


def test_an_unparseable_answer_is_a_transient_failure():
    classified = classify(ResponseParserError("Unable to parse response (syntax error: line 1), invalid XML received."))
    assert isinstance(classified, AwsTransientError)
    assert classified.code == "ResponseParserError"


def test_sync_iam_reports_an_unparseable_iam_answer_in_its_lines(garbage_iam, settings, capsys):
    settings.ROLEGATE_ISSUER = "https://rolegate.example.com"
    registry()
    assert manage("sync_iam") == 1
    out, err = capsys.readouterr()
    assert garbage_iam.hits >= 1
    assert "failed: ResponseParserError" in out
    assert "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1, err


def test_an_unexpected_exception_ends_a_command_with_one_line(monkeypatch, capsys, db):
    def explode(*args, **kwargs):
        raise ResponseParserError("Unable to parse response\nsecond line of detail")

    registry()
    monkeypatch.setattr("mappings.iam.scheduling.sync_request", explode)
    assert manage("sync_iam") == 1
    _, err = capsys.readouterr()
    assert err.strip().splitlines() == ["CommandError: failed: ResponseParserError: Unable to parse response"]
