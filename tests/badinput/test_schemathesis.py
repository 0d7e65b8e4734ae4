"""Schemathesis against the OpenAPI description the live service publishes: generated valid and
invalid requests for POST /f/{form} never produce a 5xx, and every answer matches the document
(status codes, content types, JSON schemas)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.badinput.conftest import Stack

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
BOUNDED = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generated_requests_match_the_published_description(
    stack: Stack, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.server.url}/openapi.json")
    operation = schema["/f/{form}"]["POST"]
    statuses: list[int] = []

    @BOUNDED
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        # A browser-style post is answered with a redirect to the thank-you page on another host:
        # the answer is the 303 itself, so it is not followed.
        response = case.call(base_url=stack.server.url, allow_redirects=False, timeout=15)
        statuses.append(response.status_code)
        case.validate_response(response, checks=CHECKS)

    run()
    assert len(statuses) >= 10  # it really exercised the endpoint
