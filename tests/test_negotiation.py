"""Content negotiation conformance: the 15-row matrix of the legacy Formspree test suite
(tests/test_content_types.py), each row with and without X-Requested-With, over real HTTP.

A row with no content type posts form-encoded data, as the original's test client did."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.forms import person

HTML_BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/webp,*/*;q=0.8"
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

# (content type, Accept, expected answer without the XHR header)
MATRIX = [
    (None, None, "html"),
    (JSON, "text/json", "json"),
    (JSON, JSON, "json"),
    (None, JSON, "json"),
    (None, "application/json, text/javascript, */*; q=0.01", "json"),
    (JSON, None, "json"),
    (JSON, "application/json, text/plain, */*", "json"),
    (FORM, JSON, "json"),
    (FORM, "application/json, text/plain, */*", "json"),
    (FORM, None, "html"),
    (None, "text/html", "html"),
    (JSON, "text/html", "html"),
    (JSON, HTML_BROWSER, "html"),
    (FORM, "text/html, */*; q=0.01", "html"),
    (None, HTML_BROWSER, "html"),
]


def post(
    client: httpx.Client, ctype: str | None, accept: str | None, xhr: bool, n: int
) -> httpx.Response:
    data = person(message=f"matrix row {n} xhr={xhr}")
    headers = {}
    if accept:
        headers["Accept"] = accept
    if xhr:
        headers["X-Requested-With"] = "XMLHttpRequest"
    if ctype == JSON:
        headers["Content-Type"] = JSON
        return client.post("/f/contact", content=json.dumps(data), headers=headers)
    return client.post("/f/contact", data=data, headers=headers)


def is_json(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").startswith("application/json")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_formspree_content_type_matrix(client: httpx.Client) -> None:
    for n, (ctype, accept, expected) in enumerate(MATRIX):
        plain = post(client, ctype, accept, xhr=False, n=n)
        if expected == "json":
            assert plain.status_code == 202 and is_json(plain), (n, ctype, accept)
            assert plain.json()["ok"] is True
        else:
            assert plain.status_code == 303 and not is_json(plain), (n, ctype, accept)
        xhr = post(client, ctype, accept, xhr=True, n=n)
        assert xhr.status_code == 202 and is_json(xhr), ("xhr", n, ctype, accept)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_errors_follow_the_same_rules(client: httpx.Client) -> None:
    for n, (ctype, accept, expected) in enumerate(MATRIX):
        headers = {"Accept": accept} if accept else {}
        if ctype == JSON:
            response = client.post(
                "/f/contact", content=b'{"name": ""}', headers={**headers, "Content-Type": JSON}
            )
        else:
            response = client.post("/f/contact", data={"name": ""}, headers=headers)
        assert response.status_code == 422
        assert is_json(response) == (expected == "json"), (n, ctype, accept)
