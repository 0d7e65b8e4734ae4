"""Property-based tests (hypothesis): parsing and validation are total over arbitrary input,
cleaning is idempotent and leaves nothing that can start a header, `_next` never leaves our
allowed places, and arbitrary submissions over real HTTP never produce a 5xx."""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any
from urllib.parse import urlencode, urlsplit

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.bodies import FORM, MULTIPART, BodyError, parse_body
from service.config import load_config
from service.replies import safe_next
from service.text import clean_any_text, clean_text
from service.validation import KNOWN_FIELDS, FormValidator
from tests.badinput.conftest import Stack
from tests.badinput.test_catalogue import assert_inert, stored

FAST = settings(max_examples=300, deadline=None, database=None)
OVER_HTTP = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
FIELD_NAMES = sorted(
    KNOWN_FIELDS | {"_replyto", "_next", "_subject", "_language", "_gotcha", "_ts", "id", "status"}
)
# Text with everything hostile in it: controls, bidi, separators, surrogates, private use.
NASTY = st.text(
    alphabet=st.one_of(
        st.characters(),
        st.sampled_from("\r\n\x00\x1b\u202e\u2028\u2029\x85\ufeff\u200b=?<>@,;:\"'{}%"),
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    ),
    max_size=80,
)
FIELDS = st.dictionaries(
    keys=st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=12)),
    values=st.one_of(
        NASTY,
        st.sampled_from(["on", "yes", "no", "CA", "self", "detox", "415-555-2671"]),
        st.emails().map(str),
    ),
    max_size=25,
)
ENCODED_WORD = re.compile(r"=\?.*\?=")
ALLOWED = ("https://www.example.org",)
FALLBACK = "http://testserver.example/thanks"

PERSON = {"name": "Casey", "phone": "(415) 555-2671", "consent": "on"}
CONFIG = load_config()
VALIDATOR = FormValidator(CONFIG, CONFIG.forms["contact"], check_deliverability=False)


@FAST
@given(FIELDS)
def test_validation_is_total(raw: dict[str, str]) -> None:
    result = VALIDATOR.validate(raw)
    assert (result.intake is None) == bool(result.errors)
    if result.intake is not None:
        assert_inert({"person": result.intake.person, "subject": result.intake.subject})
        assert result.intake.language in ("en", "es")
    for error in result.errors:
        assert error.code and error.message


@FAST
@given(st.binary(max_size=2000), st.sampled_from([FORM, MULTIPART, "application/json"]))
def test_body_parsing_is_total(body: bytes, mime: str) -> None:
    try:
        fields = parse_body(mime, {"boundary": "xYz"}, body)
    except BodyError as exc:
        assert 400 <= exc.status < 500 and exc.code
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | NASTY,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(NASTY, children, max_size=4),
    max_leaves=20,
)


@FAST
@given(st.dictionaries(NASTY, JSON_VALUES, max_size=10))
def test_any_json_object_parses_or_is_refused(data: dict[str, Any]) -> None:
    body = json.dumps(data).encode("utf-8", "surrogatepass")
    try:
        fields = parse_body("application/json", {}, body)
    except BodyError as exc:
        assert exc.status in (400, 413)
        return
    VALIDATOR.validate(fields)  # and whatever parses, validation takes


@FAST
@given(NASTY, st.booleans())
def test_cleaning_is_idempotent_and_leaves_nothing_for_a_header(
    value: str, multiline: bool
) -> None:
    cleaned = clean_text(value, multiline=multiline)
    assert clean_text(cleaned, multiline=multiline) == cleaned
    assert "\r" not in cleaned
    assert all(unicodedata.category(c) not in {"Cc", "Cs"} or c == "\n" for c in cleaned)
    if not multiline:
        assert "\n" not in cleaned and not ENCODED_WORD.search(cleaned)


@FAST
@given(st.text(alphabet=st.characters(max_codepoint=0x7F)), st.booleans())
def test_the_ascii_fast_path_cleans_as_the_general_path_does(value: str, multiline: bool) -> None:
    assert clean_text(value, multiline=multiline) == clean_any_text(value, multiline=multiline)


@FAST
@given(
    st.one_of(
        NASTY,
        st.builds(
            lambda prefix, rest: prefix + rest,
            st.sampled_from(
                [
                    "/",
                    "//",
                    "/\\",
                    "https://",
                    "http://www.example.org",
                    "javascript:",
                    "https://www.example.org",
                    "HTTPS://www.example.org",
                    " /",
                ]
            ),
            NASTY,
        ),
    )
)
def test_next_never_leaves_allowed_places(target: str) -> None:
    # As the endpoint does it: the validator cleans `_next`, then safe_next chooses.
    # (safe_next alone raises on "https://[x"; the validator drops such targets.)
    result = VALIDATOR.validate({**PERSON, "_next": target})
    assert result.intake is not None, result.errors
    chosen = safe_next(result.intake.next_url, ALLOWED, FALLBACK)
    if chosen == FALLBACK:
        return
    assert not any(c in chosen for c in "\\\r\n\t\x00")
    if chosen.startswith("/"):
        assert not chosen.startswith("//")
    else:
        # The contract matches the host (either scheme): never another host, never userinfo.
        parts = urlsplit(chosen)
        assert parts.scheme in ("http", "https") and parts.username is None
        assert parts.netloc.lower() in {urlsplit(origin).netloc for origin in ALLOWED}


def test_arbitrary_submissions_over_http_never_fail(stack: Stack) -> None:
    @OVER_HTTP
    @given(FIELDS, st.sampled_from(["json", "form"]))
    def post(fields: dict[str, str], encoding: str) -> None:
        if encoding == "json":
            body = json.dumps(fields).encode("utf-8", "surrogatepass")
            content_type = "application/json"
        else:
            clean = {
                k.encode("utf-8", "replace").decode(): v.encode("utf-8", "replace").decode()
                for k, v in fields.items()
            }
            body = urlencode(clean).encode()
            content_type = FORM
        response = stack.http.post(
            "/f/contact",
            content=body,
            headers={"Content-Type": content_type, "Accept": "application/json"},
        )
        assert response.status_code < 500, response.text
        assert response.status_code in (202, 400, 413, 422), response.text
        if response.status_code == 202:
            row = stored(stack, response.json()["id"])
            assert_inert(stack.cipher.open(row["payload"]))

    post()
