"""Structured logs (docs/operations.md "Logs"): JSON lines with the request id and the task id."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import override_settings

from portal.celery import app
from portal.log_context import PLAIN_FORMAT, ContextFilter, json_formatter
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]


@app.task(bind=True, name="tests.ops.log_in_a_task")
def log_in_a_task(self):
    logging.getLogger("rolegate.test").warning("working on it")
    return self.request.id


def capture(formatter: logging.Formatter):
    """The root logger through a handler configured like Rolegate's (formatter + context filter)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(ContextFilter())
    return stream, handler


@pytest.fixture
def json_lines():
    stream, handler = capture(json_formatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)


@pytest.mark.django_db
def test_every_line_of_a_request_carries_its_request_id(client, json_lines):
    # /readyz logs one warning per failing dependency: two lines here, in the request.
    with override_settings(CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/4"):
        response = client.get("/readyz")
    lines = [line for line in json_lines() if line["logger"] == "rolegate.probes"]
    assert lines and all(line["request_id"] == response["X-Request-ID"] for line in lines)
    assert lines[0]["level"] == "WARNING" and "broker" in lines[0]["message"]
    assert lines[0]["task_id"] is None
    assert lines[0]["time"].endswith("+00:00")
    # Outside a request there is none.
    logging.getLogger("rolegate.test").warning("outside")
    assert json_lines()[-1]["request_id"] is None


def test_every_line_of_a_task_carries_its_task_id(json_lines):
    result = log_in_a_task.delay()
    [line] = [line for line in json_lines() if line["logger"] == "rolegate.test"]
    assert line["task_id"] == result.id == result.get()
    logging.getLogger("rolegate.test").warning("after the task")
    assert json_lines()[-1]["task_id"] is None


def test_plain_text_shows_the_ids_at_the_end_of_the_line():
    stream, handler = capture(logging.Formatter(PLAIN_FORMAT))
    logger = logging.getLogger("rolegate.test")
    logger.addHandler(handler)
    try:
        log_in_a_task.delay()
        logger.warning("no context")
    finally:
        logger.removeHandler(handler)
    in_task, outside = stream.getvalue().splitlines()
    assert " WARNING rolegate.test working on it task_id=" in in_task
    assert outside.endswith(" WARNING rolegate.test no context")


def run_settings(env: dict[str, str], code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); " + code],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DJANGO_SECRET_KEY": "log-test-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_rolegate_log_format_json_writes_one_json_object_per_line():
    code = "import logging; logging.getLogger('rolegate.x').warning('two\\nlines %s', 'é')"
    result = run_settings({"ROLEGATE_LOG_FORMAT": "json"}, code)
    assert result.returncode == 0, result.stderr
    [line] = result.stderr.splitlines()
    record = json.loads(line)
    assert record["message"] == "two\nlines é"
    assert record["level"] == "WARNING" and record["logger"] == "rolegate.x"
    assert set(record) >= {"time", "request_id", "task_id"}
    assert "context" not in record


def test_plain_text_is_the_default_and_a_wrong_format_is_refused():
    result = run_settings({}, "import logging; logging.getLogger('rolegate.x').warning('hello')")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().endswith(" WARNING rolegate.x hello")
    refused = run_settings({"ROLEGATE_LOG_FORMAT": "xml"}, "")
    assert refused.returncode != 0
    assert "ROLEGATE_LOG_FORMAT='xml' is neither plain nor json" in refused.stderr
