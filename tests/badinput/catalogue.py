"""The bad-input catalogue: hostile and malformed submissions, each with its expected answer.

Outcomes:
- "accepted": 202, stored, every stored string inert (see tests/badinput/test_catalogue.py);
- "invalid": 422 naming `code` (a field's error code), nothing stored;
- "refused": a 4xx with the error code `code`, nothing stored;
- "redirect": a browser post, 303 to a safe place (ours, a relative path or an allowed origin).
Pass criterion for every case: never a 5xx.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

XHR = (("X-Requested-With", "XMLHttpRequest"),)
BOUNDARY = "----intakeCatalogueBoundary7MA4YWxkTrZu0gW"
EVIL = "evil@attacker.example"
FORGED_ID = "f" * 32


@dataclass(frozen=True)
class Case:
    id: str
    body: bytes
    content_type: str | None
    outcome: str  # accepted | invalid | refused | redirect
    code: str = ""  # error code expected for invalid / refused
    headers: tuple[tuple[str, str], ...] = XHR
    # Fields whose stored value the check compares (after cleaning) with what was sent.
    forged: bool = False  # internal fields were forged: our own values must win
    tags: frozenset[str] = field(default_factory=frozenset)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def base(case_id: str) -> dict[str, Any]:
    """A valid person, unique per case (email and message), so no case is another's duplicate."""
    return {
        "name": "Casey Tester",
        "email": f"case.{slug(case_id)}@example.com",
        "phone": "(415) 555-2671",
        "for_whom": "self",
        "message": f"Please call me about {case_id}.",
        "consent": "on",
    }


def as_json(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields).encode()


def as_form(fields: dict[str, Any]) -> bytes:
    return urlencode({k: str(v) for k, v in fields.items()}).encode()


def as_multipart(fields: dict[str, Any]) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'
        for key, value in fields.items()
    ]
    return ("".join(parts) + f"--{BOUNDARY}--\r\n").encode()


ENCODINGS = {
    "json": (as_json, "application/json"),
    "form": (as_form, "application/x-www-form-urlencoded"),
    "multipart": (as_multipart, f"multipart/form-data; boundary={BOUNDARY}"),
}


def _b(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


OK = ("accepted", "")

# (label, field, value, (outcome, code)): each sent as JSON, form-encoded and multipart.
FIELD_CASES: list[tuple[str, str, str, tuple[str, str]]] = [
    # Header injection through the display name that Reply-To carries.
    ("name crlf bcc", "name", f"Casey\r\nBcc: {EVIL}", OK),
    ("name lf to", "name", f"Casey\nTo: {EVIL}", OK),
    ("name cr cc", "name", f"Casey\rCc: {EVIL}", OK),
    ("name folded", "name", "Casey\r\n Tester\r\n\tBcc: x", OK),
    ("name encoded word b", "name", _b(f"Casey\r\nBcc: {EVIL}"), OK),
    ("name encoded word q", "name", f"=?utf-8?q?Casey=0D=0ABcc:_{EVIL}?=", OK),
    ("name encoded word inside", "name", f"Casey =?utf-8?q?x=0D=0ABcc:_{EVIL}?= Tester", OK),
    ("name encoded word half", "first_name", "=?utf-8?q?Casey=0D=0A", OK),
    ("name angle address", "name", f"Casey <{EVIL}>", OK),
    ("name comma address", "name", f"Casey, {EVIL}", OK),
    ("name unicode separators", "name", "Casey\u2028Bcc: x\u2029y\x85z", OK),
    ("name nul", "name", "Casey\x00Tester", OK),
    ("name controls", "name", "Casey\x07\x08\x1b[31mTester\x7f", OK),
    ("name bidi override", "name", "Casey \u202eretseT", OK),
    ("name zero width", "name", "Ca\u200bsey\ufeff Tester", OK),
    ("name script", "name", "<script>alert(1)</script>", OK),
    ("name jinja", "name", "{{7*7}} {{ config }}", OK),
    ("name jinja block", "name", "{% for i in range(999999999) %}x{% endfor %}", OK),
    ("name other templates", "name", "${7*7} #{7*7} <%= 7*7 %> [[7*7]]", OK),
    ("name sql", "name", "Robert'); DROP TABLE submissions;--", OK),
    ("name csv hyperlink", "name", '=HYPERLINK("http://evil.example","call me")', OK),
    ("name csv cmd", "name", "+cmd|' /C calc'!A0", OK),
    ("name csv at", "name", "@SUM(1+1)*cmd|' /C calc'!A0", OK),
    ("name accents", "name", "José Ñúñez-Gómez", OK),
    ("name decomposed", "name", "Jose\u0301 Nun\u0303ez", OK),
    ("name arabic", "name", "محمد الأحمد", OK),
    ("name emoji", "name", "Casey 🙂", OK),
    ("name too long", "name", "A" * 201, ("invalid", "TOO_LONG")),
    ("name blank", "name", "   \t  ", ("invalid", "REQUIRED_FIELD_EMPTY")),
    ("name invisible only", "name", "\u200b\u202e\x00", ("invalid", "REQUIRED_FIELD_EMPTY")),
    # Recipient injection through the address the auto-reply goes to.
    ("email crlf bcc", "email", f"casey@example.com\r\nBcc: {EVIL}", ("invalid", "TYPE_EMAIL")),
    ("email lf cc", "email", f"casey@example.com\nCc: {EVIL}", ("invalid", "TYPE_EMAIL")),
    ("email two addresses", "email", f"casey@example.com, {EVIL}", ("invalid", "TYPE_EMAIL")),
    ("email semicolon", "email", f"casey@example.com;{EVIL}", ("invalid", "TYPE_EMAIL")),
    ("email display name", "email", f"Casey <{EVIL}>", ("invalid", "TYPE_EMAIL")),
    ("email quoted local", "email", '"evil@attacker"@example.com', ("invalid", "TYPE_EMAIL")),
    ("email domain literal", "email", "casey@[127.0.0.1]", ("invalid", "TYPE_EMAIL")),
    ("email no at", "email", "casey.example.com", ("invalid", "TYPE_EMAIL")),
    ("email script", "email", "<script>@example.com", ("invalid", "TYPE_EMAIL")),
    ("email too long", "email", "a" * 250 + "@example.com", ("invalid", "TOO_LONG")),
    (
        "email encoded word local",
        "email",
        "=?utf-8?q?a=2C_evil=40attacker.example?=@example.com",
        ("invalid", "TYPE_EMAIL"),
    ),
    (
        "email encoded word crlf",
        "email",
        "=?utf-8?q?a=0D=0ABcc:_x?=@example.com",
        ("invalid", "TYPE_EMAIL"),
    ),
    ("email nul", "email", "casey.nul\x00@example.com", OK),
    ("email trailing crlf", "email", "casey.crlf@example.com\r\n", OK),
    ("email homoglyph domain", "email", "casey@exаmple.com", OK),
    # Phones: only a real number survives, normalized to E.164.
    ("phone crlf", "phone", f"415-555-2671\r\nBcc: {EVIL}", ("invalid", "TYPE_PHONE")),
    ("phone words", "phone", "CALL-ME-NOW", ("invalid", "TYPE_PHONE")),
    ("phone sql", "phone", "'; DROP TABLE--", ("invalid", "TYPE_PHONE")),
    ("phone bidi reversed", "phone", "\u202e1762-555 (415)", ("invalid", "TYPE_PHONE")),
    ("phone formula", "phone", "=1+1", ("invalid", "TYPE_PHONE")),
    ("phone too long", "phone", "1" * 41, ("invalid", "TOO_LONG")),
    ("phone arabic digits", "phone", "٤١٥٥٥٥٢٦٧١", OK),
    ("phone extension", "phone", "+1 415 555 2671 ext. 99", OK),
    # The free-text message: kept, as text.
    ("message crlf headers", "message", f"Hi\r\nBcc: {EVIL}\r\n\r\nbody", OK),
    ("message img onerror", "message", "<img src=x onerror=alert(1)>", OK),
    ("message jinja", "message", "{{ config }} {{7*7}} {% include '/etc/passwd' %}", OK),
    ("message mime boundary", "message", "--==x==\r\nContent-Type: text/html\r\n\r\n<b>x</b>", OK),
    (
        "message smtp dot",
        "message",
        "hi\r\n.\r\nMAIL FROM:<x@attacker.example>\r\nRCPT TO:<y@z>",
        OK,
    ),
    ("message nul flood", "message", "\x00" * 500 + "hello", OK),
    ("message newline flood", "message", "\n" * 2000 + "hi", OK),
    ("message log injection", "message", 'ok"}\n{"level":"critical","event":"forged"}', OK),
    ("message ssi", "message", '<!--#exec cmd="ls"-->', OK),
    ("message private use", "message", "\ue000\U0010fffd hi", OK),
    ("message sql sleep", "message", "'; SELECT pg_sleep(10);--", OK),
    ("message csv formula", "message", "=cmd|' /C calc'!A0", OK),
    ("message too long", "message", "x" * 5001, ("invalid", "TOO_LONG")),
    ("subject crlf", "_subject", f"Hello\r\nBcc: {EVIL}", OK),
    ("subject encoded word", "_subject", _b(f"Hello\r\nBcc: {EVIL}"), OK),
    ("subject too long", "_subject", "x" * 151, ("invalid", "TOO_LONG")),
    ("best time crlf", "best_time", f"6pm\r\nBcc: {EVIL}", OK),
    ("insurance formula", "insurance", '=HYPERLINK("http://evil.example")', OK),
    ("state injection", "state", f"CA\r\nBcc: {EVIL}", ("invalid", "INVALID_CHOICE")),
    ("for whom script", "for_whom", "<script>", ("invalid", "INVALID_CHOICE")),
    ("program traversal", "program", "../../etc/passwd", ("invalid", "INVALID_CHOICE")),
    ("contact template", "preferred_contact", "{{7*7}}", ("invalid", "INVALID_CHOICE")),
    ("consent maybe", "consent", "maybe", ("invalid", "TYPE_BOOLEAN")),
    ("language traversal", "_language", "../../../etc", OK),
    ("language crlf", "_language", "es\r\nX-Injected: 1", OK),
    ("extra key markup", "note<script>", "x", OK),
    ("extra formula", "referral", "=cmd|' /C calc'!A0", OK),
]

# Internal columns a client might try to set: our own values must win, the rest are extras.
FORGED_FIELDS = {
    "id": FORGED_ID,
    "_id": FORGED_ID,
    "submission_id": FORGED_ID,
    "status": "released",
    "urgent": "true",
    "quarantine_reason": "none",
    "client_address": "10.9.8.7",
    "created_at": "1970-01-01T00:00:00Z",
    "payload": "fernet:forged",
    "fingerprint": "forged",
    "consent_hash": "0" * 64,
    "__proto__": "polluted",
}

# Where a browser is sent after success: only ours, relative paths, or allowed origins.
NEXT_TARGETS = [
    "//evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "///evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "https://evil.example/",
    "https://www.example.org.evil.example/",
    "https://www.example.org@evil.example/",
    "https://www.example.org:8443/thanks",
    "http://www.example.org\r\nSet-Cookie: x=1",
    "https:evil.example",
    " https://evil.example",
    "/\tevil",
    "ftp://www.example.org/x",
    "/%2F%2Fevil.example",
    "https://www.example.org/thank-you",
    "HTTPS://WWW.EXAMPLE.ORG/ok",
    "/merci?x=1#y",
    "https://[evil.example",
    "//[::1",
    "http://]x/",
]


def _field_cases() -> list[Case]:
    cases = []
    for label, name, value, (outcome, code) in FIELD_CASES:
        for encoding, (encode, ctype) in ENCODINGS.items():
            case_id = f"{encoding}: {label}"
            fields = base(case_id)
            fields[name] = value
            cases.append(
                Case(case_id, encode(fields), ctype, outcome, code, tags=frozenset({label}))
            )
    return cases


def _split_name_cases() -> list[Case]:
    """First and last name, harmless apart, that join into one encoded word carrying a CRLF."""
    cases = []
    for encoding, (encode, ctype) in ENCODINGS.items():
        case_id = f"{encoding}: name encoded word split"
        fields = base(case_id)
        del fields["name"]
        fields["first_name"] = "=?utf-8?q?Casey=0D=0ABcc:"
        fields["last_name"] = f"_{EVIL}?="
        tags = frozenset({"name encoded word split"})
        cases.append(Case(case_id, encode(fields), ctype, "accepted", tags=tags))
    return cases


def _forged_cases() -> list[Case]:
    cases = []
    for encoding, (encode, ctype) in ENCODINGS.items():
        case_id = f"{encoding}: forged internal fields"
        cases.append(
            Case(
                case_id, encode({**base(case_id), **FORGED_FIELDS}), ctype, "accepted", forged=True
            )
        )
    return cases


def _next_cases() -> list[Case]:
    cases = []
    for target in NEXT_TARGETS:
        case_id = f"next {target!r}"
        cases.append(
            Case(
                case_id,
                as_form({**base(case_id), "_next": target}),
                "application/x-www-form-urlencoded",
                "redirect",
                headers=(),
            )
        )
    case_id = "json next evil"
    cases.append(
        Case(
            case_id,
            as_json({**base(case_id), "_next": "//evil.example"}),
            "application/json",
            "accepted",
        )
    )
    return cases


def _json(case_id: str, **changes: Any) -> bytes:
    return as_json({**base(case_id), **changes})


def _type_cases() -> list[Case]:
    """JSON values of the wrong type: flattened to text when a form could mean it, else 400."""
    spec: list[tuple[str, dict[str, Any], str, str]] = [
        ("json name number", {"name": 12345}, "accepted", ""),
        ("json name list", {"name": ["Casey", "Tester"]}, "accepted", ""),
        ("json name object", {"name": {"first": "Casey"}}, "refused", "MALFORMED_BODY"),
        ("json name deep list", {"name": [[["deep"]]]}, "refused", "MALFORMED_BODY"),
        ("json name null", {"name": None}, "invalid", "REQUIRED_FIELD_EMPTY"),
        ("json consent true", {"consent": True}, "accepted", ""),
        ("json consent false", {"consent": False}, "invalid", "REQUIRED_FIELD_MISSING"),
        ("json consent one", {"consent": 1}, "accepted", ""),
        ("json consent two", {"consent": 2}, "invalid", "TYPE_BOOLEAN"),
        ("json consent list", {"consent": ["on", "off"]}, "invalid", "TYPE_BOOLEAN"),
        ("json email list", {"email": ["a@example.com", EVIL]}, "invalid", "TYPE_EMAIL"),
        ("json phone number", {"phone": 4155552671}, "accepted", ""),
        ("json phone float", {"phone": 4155552671.5}, "invalid", "TYPE_PHONE"),
        ("json message huge float", {"message": 1e308 * 10}, "refused", "MALFORMED_BODY"),
        ("json message true", {"message": True}, "accepted", ""),
        ("json message empty list", {"message": []}, "accepted", ""),
        ("json message list of null", {"message": [None, None]}, "accepted", ""),
        ("json voicemail text", {"voicemail_ok": "perhaps"}, "invalid", "TYPE_BOOLEAN"),
        ("json extra object", {"extra": {"a": 1}}, "refused", "MALFORMED_BODY"),
        ("json language number", {"_language": 7}, "accepted", ""),
        ("json next list", {"_next": ["/a", "//evil.example"]}, "accepted", ""),
        ("json gotcha list", {"_gotcha": ["", ""]}, "accepted", ""),
    ]
    cases = []
    for case_id, changes, outcome, code in spec:
        cases.append(Case(case_id, _json(case_id, **changes), "application/json", outcome, code))
    return cases


def _raw_json_cases() -> list[Case]:
    valid = _json("raw json valid")
    deep = b'{"name": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    many = json.dumps({f"f{i}": "x" for i in range(1000)}).encode()
    spec: list[tuple[str, bytes, str, str, str]] = [
        ("json empty body", b"", "application/json", "refused", "MALFORMED_BODY"),
        ("json null", b"null", "application/json", "refused", "MALFORMED_BODY"),
        ("json array", b"[1, 2]", "application/json", "refused", "MALFORMED_BODY"),
        ("json string", b'"name=Casey"', "application/json", "refused", "MALFORMED_BODY"),
        ("json number", b"123", "application/json", "refused", "MALFORMED_BODY"),
        ("json truncated", valid[:-5], "application/json", "refused", "MALFORMED_BODY"),
        (
            "json trailing garbage",
            valid + b"garbage",
            "application/json",
            "refused",
            "MALFORMED_BODY",
        ),
        ("json two objects", valid + valid, "application/json", "refused", "MALFORMED_BODY"),
        ("json bom", b"\xef\xbb\xbf" + valid, "application/json", "refused", "MALFORMED_BODY"),
        (
            "json utf16",
            _json("raw utf16").decode().encode("utf-16"),
            "application/json",
            "refused",
            "INVALID_ENCODING",
        ),
        (
            "json invalid utf8",
            b'{"name": "\xff\xfe"}',
            "application/json",
            "refused",
            "INVALID_ENCODING",
        ),
        (
            "json overlong utf8",
            b'{"name": "\xc0\xaf"}',
            "application/json",
            "refused",
            "INVALID_ENCODING",
        ),
        ("json nan", b'{"name": NaN}', "application/json", "refused", "MALFORMED_BODY"),
        ("json infinity", b'{"name": -Infinity}', "application/json", "refused", "MALFORMED_BODY"),
        (
            "json huge integer",
            b'{"name": ' + b"9" * 5000 + b"}",
            "application/json",
            "refused",
            "MALFORMED_BODY",
        ),
        ("json deep nesting", deep, "application/json", "refused", "MALFORMED_BODY"),
        ("json thousand fields", many, "application/json", "refused", "TOO_MANY_FIELDS"),
        (
            "json lone surrogate",
            _json("raw surrogate").replace(b"Casey Tester", b"Casey \\ud800"),
            "application/json",
            "accepted",
            "",
        ),
        (
            "json nul escape",
            _json("raw nul").replace(b"Casey Tester", b"Casey\\u0000Tester"),
            "application/json",
            "accepted",
            "",
        ),
        (
            "json duplicate keys",
            _json("raw dup")[:-1] + b', "name": "Second Name"}',
            "application/json",
            "accepted",
            "",
        ),
        (
            "json long key",
            _json("raw long key")[:-1] + b', "' + b"k" * 20000 + b'": "v"}',
            "application/json",
            "accepted",
            "",
        ),
        (
            "json charset latin1",
            _json("raw latin1"),
            "application/json; charset=latin-1",
            "accepted",
            "",
        ),
        ("json vendor type", _json("raw vendor"), "application/vnd.api+json", "accepted", ""),
        ("text json type", _json("raw text json"), "text/json", "accepted", ""),
        (
            "json 150 fields",
            as_json({**base("raw 150"), **{f"f{i}": "x" for i in range(150)}}),
            "application/json",
            "invalid",
            "TOO_MANY_FIELDS",
        ),
        (
            "json 30 extras",
            as_json({**base("raw 30"), **{f"f{i}": "x" for i in range(30)}}),
            "application/json",
            "invalid",
            "TOO_MANY_FIELDS",
        ),
        (
            "json oversize",
            _json("raw big", message="x" * 70000),
            "application/json",
            "refused",
            "BODY_TOO_LARGE",
        ),
    ]
    return [Case(i, body, ctype, outcome, code) for i, body, ctype, outcome, code in spec]


def _raw_form_cases() -> list[Case]:
    form = "application/x-www-form-urlencoded"

    def valid(case_id: str) -> bytes:
        return as_form(base(case_id))

    spec: list[tuple[str, bytes, str, str, str]] = [
        ("form invalid percent utf8", b"name=%FF%FE", form, "refused", "INVALID_ENCODING"),
        ("form overlong percent", b"name=%C0%AF&consent=on", form, "refused", "INVALID_ENCODING"),
        ("form raw invalid utf8", b"name=\xff", form, "refused", "INVALID_ENCODING"),
        ("form bare percent", b"%", form, "invalid", "REQUIRED_FIELD_MISSING"),
        ("form empty", b"", form, "invalid", "REQUIRED_FIELD_MISSING"),
        ("form empty keys", b"=&=&=x", form, "invalid", "REQUIRED_FIELD_MISSING"),
        (
            "form semicolons",
            b"name=x;email=y@example.com;consent=on",
            form,
            "invalid",
            "REQUIRED_FIELD_MISSING",
        ),
        ("form raw controls", b"\x00\x01\x02", form, "invalid", "REQUIRED_FIELD_MISSING"),
        ("form thousands of fields", b"a=1&" * 5000, form, "refused", "TOO_MANY_FIELDS"),
        ("form repeated names", valid("repeat") + b"&name=Again&name=Third", form, "accepted", ""),
        ("form percent nul", valid("nul").replace(b"Casey", b"Ca%00sey"), form, "accepted", ""),
        (
            "form plus and spaces",
            valid("plus").replace(b"Casey", b"Ca+++sey"),
            form,
            "accepted",
            "",
        ),
        ("form charset utf16 claimed", valid("utf16"), form + "; charset=utf-16", "accepted", ""),
        (
            "form oversize",
            valid("big") + b"&message=" + b"x" * 70000,
            form,
            "refused",
            "BODY_TOO_LARGE",
        ),
    ]
    return [Case(i, body, ctype, outcome, code) for i, body, ctype, outcome, code in spec]


def _part(name: str, value: str, extra: str = "") -> str:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"{extra}\r\n\r\n{value}\r\n'
    )


def _raw_multipart_cases() -> list[Case]:
    ctype = f"multipart/form-data; boundary={BOUNDARY}"

    def fields(case_id: str) -> str:
        return "".join(_part(k, v) for k, v in base(case_id).items())

    parts = fields("raw multipart")
    end = f"--{BOUNDARY}--\r\n"
    many = "".join(_part(f"f{i}", "x") for i in range(300)) + end
    spec: list[tuple[str, bytes, str, str, str]] = [
        (
            "multipart no boundary",
            (parts + end).encode(),
            "multipart/form-data",
            "refused",
            "MALFORMED_BODY",
        ),
        (
            "multipart huge boundary",
            b"x",
            "multipart/form-data; boundary=" + "b" * 300,
            "refused",
            "MALFORMED_BODY",
        ),
        (
            "multipart file part",
            (parts + _part("upload", "GIF89a", '; filename="x.gif"') + end).encode(),
            ctype,
            "refused",
            "FILE_NOT_ACCEPTED",
        ),
        (
            "multipart rfc2231 filename",
            (parts + _part("upload", "x", "; filename*=utf-8''x.txt") + end).encode(),
            ctype,
            "refused",
            "FILE_NOT_ACCEPTED",
        ),
        (
            "multipart no name",
            (parts + f"--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nx\r\n" + end).encode(),
            ctype,
            "refused",
            "MALFORMED_BODY",
        ),
        (
            "multipart no disposition",
            (parts + f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nx\r\n" + end).encode(),
            ctype,
            "refused",
            "MALFORMED_BODY",
        ),
        (
            "multipart attachment disposition",
            (
                parts + f"--{BOUNDARY}\r\nContent-Disposition: "
                f'attachment; name="x"\r\n\r\nx\r\n' + end
            ).encode(),
            ctype,
            "refused",
            "MALFORMED_BODY",
        ),
        ("multipart garbage", b"this is not multipart", ctype, "refused", "MALFORMED_BODY"),
        (
            "multipart broken header",
            f"--{BOUNDARY}\r\nno colon here\r\n\r\nx\r\n{end}".encode(),
            ctype,
            "refused",
            "MALFORMED_BODY",
        ),
        ("multipart three hundred parts", many.encode(), ctype, "refused", "TOO_MANY_FIELDS"),
        (
            "multipart invalid utf8 value",
            (
                parts + f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="note"\r\n\r\n'
            ).encode()
            + b"\xff\xfe\r\n"
            + end.encode(),
            ctype,
            "refused",
            "INVALID_ENCODING",
        ),
        # Browsers send no preamble; the parser refuses one (RFC 2046 allows it): a clear 400.
        (
            "multipart preamble",
            ("preamble junk\r\n" + parts + end).encode(),
            ctype,
            "refused",
            "MALFORMED_BODY",
        ),
        (
            "multipart epilogue",
            (fields("epilogue") + end + "epilogue junk").encode(),
            ctype,
            "accepted",
            "",
        ),
        (
            "multipart quoted boundary",
            (fields("quoted") + end).encode(),
            f'multipart/form-data; boundary="{BOUNDARY}"',
            "accepted",
            "",
        ),
        (
            "multipart part content type",
            (
                fields("part type").replace(
                    'name="message"\r\n',
                    'name="message"\r\nContent-Type: text/html; charset=latin-1\r\n',
                )
                + end
            ).encode(),
            ctype,
            "accepted",
            "",
        ),
        (
            "multipart crlf in value",
            (fields("crlf") + _part("note", f"a\r\nBcc: {EVIL}") + end).encode(),
            ctype,
            "accepted",
            "",
        ),
        (
            "multipart long header",
            (
                parts + f"--{BOUNDARY}\r\nContent-Disposition: form-data; "
                f'name="note"\r\nX-Long: {"h" * 20000}\r\n\r\nx\r\n' + end
            ).encode(),
            ctype,
            "refused",
            "MALFORMED_BODY",
        ),
    ]
    return [Case(i, body, ct, outcome, code) for i, body, ct, outcome, code in spec]


def _media_type_cases() -> list[Case]:
    body = _json("media")
    spec: list[tuple[str, str | None, str]] = [
        ("no content type", None, "UNSUPPORTED_MEDIA_TYPE"),
        ("text plain", "text/plain", "UNSUPPORTED_MEDIA_TYPE"),
        ("xml", "application/xml", "UNSUPPORTED_MEDIA_TYPE"),
        ("multipart mixed", "multipart/mixed; boundary=x", "UNSUPPORTED_MEDIA_TYPE"),
        ("two types", "application/json, text/html", "UNSUPPORTED_MEDIA_TYPE"),
        ("huge content type", "application/" + "x" * 5000, "UNSUPPORTED_MEDIA_TYPE"),
        ("octet stream", "application/octet-stream", "UNSUPPORTED_MEDIA_TYPE"),
        ("javascript", "application/javascript", "UNSUPPORTED_MEDIA_TYPE"),
    ]
    return [Case(f"media {i}", body, ctype, "refused", code) for i, ctype, code in spec]


def all_cases() -> list[Case]:
    return (
        _field_cases()
        + _split_name_cases()
        + _forged_cases()
        + _next_cases()
        + _type_cases()
        + _raw_json_cases()
        + _raw_form_cases()
        + _raw_multipart_cases()
        + _media_type_cases()
    )


CASES = all_cases()
# A subset sent through the real worker, whose emails are parsed for injected headers/recipients.
EMAIL_LABELS = (
    "name crlf bcc",
    "name folded",
    "name encoded word b",
    "name encoded word q",
    "name angle address",
    "name comma address",
    "name unicode separators",
    "name script",
    "name jinja",
    "name encoded word inside",
    "name encoded word split",
    "message crlf headers",
    "message mime boundary",
    "message smtp dot",
    "subject crlf",
    "subject encoded word",
    "best time crlf",
)
