"""Schemathesis against the served OpenAPI document: for every operation, generated valid and
invalid requests go through the real blueprint bound to the test database (one rolled-back
transaction), and every answer must be no 5xx, a documented status and content type, a body
that fits the documented schema, and a 4xx for invalid data."""

from __future__ import annotations

import os
from datetime import timedelta

import flask
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Connection, text

from dashboard.api import make_blueprint
from etl import incidents as inc
from etl.deadlines import work_calendar
from etl.settings import Settings
from geo import workflow as wf
from tests.test_incidents_net import at, build_net

NOW = at(20, 10)
# examples per operation and mode: about 15 s in all (API_FUZZ_EXAMPLES=100: about 80 s)
EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "20"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection]  # fmt: skip


@pytest.fixture
def app(conn: Connection) -> flask.Flask:
    """The test net with two grid teams and one dispatched case, served by the blueprint."""
    build_net(conn)
    for code, x in (("T1", 108.016), ("T2", 108.019)):
        conn.execute(text("""INSERT INTO responders (code, name, type, status, geom) VALUES
            (:c, :c, 'grid_team', 'available', ST_SetSRID(ST_MakePoint(:x, 32.005), 4490))"""),
            {"c": code, "x": x})  # fmt: skip
    cats, county = inc.load_categories(conn), wf.Actor("county", "staff", "centre")
    rep = inc.Report("0201", 108.015, 32.005, at(20, 9), code="EV1")
    inc.report(conn, rep, cats)
    for action in ("verify", "file", "dispatch"):
        inc.act(conn, "EV1", action, county, calendar=work_calendar(Settings()), at=at(20, 9, 30))
    served = flask.Flask("schemathesis")
    served.register_blueprint(make_blueprint(conn, Settings(), clock=lambda: NOW))
    return served


def test_the_api_honours_its_own_document(app: flask.Flask) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    failures = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 18  # every operation (schemathesis skips the document itself)
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=timedelta(seconds=5), database=None,
                      derandomize=True, suppress_health_check=list(HealthCheck))  # fmt: skip
            def call(case: schemathesis.Case) -> None:
                case.call_and_validate(checks=CHECKS)

            try:
                call()
            except Unsatisfiable:  # nothing to make invalid: no parameters, no body
                assert mode is GenerationMode.NEGATIVE
            except (Exception, BaseExceptionGroup) as exc:  # collect every operation's failures
                failures.append(f"{operation.label} [{mode.value}]: {exc!r}")
    assert not failures, "\n\n".join(failures)
