"""Read a request body within a byte limit and parse it into flat string fields."""

from __future__ import annotations

import functools
import json
import re
from typing import Any
from urllib.parse import parse_qsl

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

MAX_FIELDS = 200  # parsing stops here; validation allows fewer
MAX_JSON_DEPTH = 4  # {"field": ["a", "b"]} is depth 2; nothing a form sends goes deeper

FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
JSON_TYPES = ("application/json", "text/json")
_RFC2231_FILENAME = re.compile(rb";\s*filename\*\s*=", re.IGNORECASE)


class BodyError(Exception):
    """The body cannot be accepted. `status` is the HTTP status, `code` a stable reason."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def media_type(request: Request) -> tuple[str, dict[str, str]]:
    """The request's media type, lower-cased, and its parameters (charset, boundary, ...)."""
    mime, params = _parse_content_type(request.headers.get("content-type", ""))
    return mime, dict(params)


@functools.lru_cache(maxsize=128)  # a site sends a handful of distinct Content-Type values
def _parse_content_type(header: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    value, options = parse_options_header(header)
    params = tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in options.items())
    return value.decode("latin-1").strip().lower(), params


def is_json_type(mime: str) -> bool:
    return mime in JSON_TYPES or (mime.startswith("application/") and mime.endswith("+json"))


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body; 413 as soon as it passes `limit`, whatever Content-Length claimed."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise BodyError(413, "BODY_TOO_LARGE", "This submission is too large.")
        except ValueError as exc:
            raise BodyError(400, "BAD_CONTENT_LENGTH", "Content-Length is not a number.") from exc
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyError(413, "BODY_TOO_LARGE", "This submission is too large.")
            chunks.append(chunk)
    except ClientDisconnect as exc:  # the client hung up before sending what it announced
        raise BodyError(400, "INCOMPLETE_BODY", "The submission was cut off.") from exc
    return b"".join(chunks)


def parse_body(mime: str, params: dict[str, str], body: bytes) -> dict[str, str]:
    """Flat fields from a form-encoded, multipart or JSON body; BodyError for anything else."""
    if mime == FORM:
        return _parse_urlencoded(body)
    if mime == MULTIPART:
        return _parse_multipart(params.get("boundary", ""), body)
    if is_json_type(mime):
        return _parse_json(body)
    raise BodyError(
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        "Please send the form as application/x-www-form-urlencoded, "
        "multipart/form-data or application/json.",
    )


def _add(fields: dict[str, str], key: str, value: str) -> None:
    """Repeated names (checkbox groups) join with a comma, as people read them."""
    if key in fields and value:
        fields[key] = f"{fields[key]}, {value}" if fields[key] else value
    else:
        fields.setdefault(key, value)
    if len(fields) > MAX_FIELDS:
        raise BodyError(413, "TOO_MANY_FIELDS", "This submission has too many fields.")


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(400, "INVALID_ENCODING", "The submission is not valid UTF-8.") from exc


def _parse_urlencoded(body: bytes) -> dict[str, str]:
    text = _utf8(body)
    try:
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except UnicodeDecodeError as exc:
        raise BodyError(400, "INVALID_ENCODING", "The submission is not valid UTF-8.") from exc
    except ValueError as exc:
        raise BodyError(413, "TOO_MANY_FIELDS", "This submission has too many fields.") from exc
    fields: dict[str, str] = {}
    for key, value in pairs:
        _add(fields, key, value)
    return fields


def _parse_multipart(boundary: str, body: bytes) -> dict[str, str]:
    if not boundary or len(boundary) > 200:
        raise BodyError(400, "MALFORMED_BODY", "The multipart body has no usable boundary.")
    parts: list[tuple[list[tuple[bytes, bytes]], bytearray]] = []
    header_field = bytearray()
    header_value = bytearray()

    def on_part_begin() -> None:
        parts.append(([], bytearray()))
        if len(parts) > MAX_FIELDS:
            raise BodyError(413, "TOO_MANY_FIELDS", "This submission has too many fields.")

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        parts[-1][0].append((bytes(header_field).lower(), bytes(header_value)))
        header_field.clear()
        header_value.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1][1].extend(data[start:end])

    callbacks: Any = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
    }
    parser = MultipartParser(boundary.encode("latin-1"), callbacks)
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise BodyError(400, "MALFORMED_BODY", "The multipart body is malformed.") from exc
    fields: dict[str, str] = {}
    for headers, data in parts:
        disposition = dict(headers).get(b"content-disposition", b"")
        kind, options = parse_options_header(disposition)
        if kind != b"form-data" or b"name" not in options:
            raise BodyError(400, "MALFORMED_BODY", "A multipart part has no field name.")
        # parse_options_header drops RFC 2231 `filename*=`; a file part is a file part all the same.
        if b"filename" in options or _RFC2231_FILENAME.search(disposition):
            raise BodyError(
                400, "FILE_NOT_ACCEPTED", "Files cannot be sent with this form; please remove it."
            )
        _add(fields, _utf8(options[b"name"]), _utf8(bytes(data)))
    return fields


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


def _parse_json(body: bytes) -> dict[str, str]:
    text = _utf8(body)
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise BodyError(400, "MALFORMED_BODY", "The JSON body is nested too deeply.") from exc
    except ValueError as exc:
        raise BodyError(400, "MALFORMED_BODY", "The body is not valid JSON.") from exc
    if not isinstance(data, dict):
        raise BodyError(400, "MALFORMED_BODY", "The JSON body must be an object of fields.")
    fields: dict[str, str] = {}
    for key, value in data.items():
        _add(fields, key, _json_scalar(key, value, depth=2))
    return fields


def _json_scalar(key: str, value: Any, depth: int) -> str:
    if depth > MAX_JSON_DEPTH:
        raise BodyError(400, "MALFORMED_BODY", "The JSON body is nested too deeply.")
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ", ".join(v for v in (_json_scalar(key, item, depth + 1) for item in value) if v)
    raise BodyError(
        400, "MALFORMED_BODY", f"The field {key[:40]!r} must be text, a number or a list."
    )
