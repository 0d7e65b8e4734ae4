"""An OpenAPI 3 description of POST /f/{form}, published at GET /openapi.json.

Written by hand from the same constants the validator uses, so a site builder (or schemathesis)
sees exactly the fields, limits and answers the endpoint has. Form names come from the live
configuration; everything else is the endpoint contract.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.config import AppConfig
from service.replies import FAILURE_MESSAGE, SUCCESS_MESSAGE
from service.settings import Settings
from service.state import AppState
from service.validation import (
    FOR_WHOM,
    LANGUAGES,
    MAX_EXTRA_VALUE,
    MAX_LENGTHS,
    PREFERRED_CONTACT,
)

OPENAPI_VERSION = "3.0.3"
API_VERSION = "1"  # bump when the contract of POST /f/{form} changes
FLAGS = ("voicemail_ok", "text_ok", "email_ok", "consent")
CAPTCHA_FIELDS = ("cf-turnstile-response", "h-captcha-response", "g-recaptcha-response")
FLAG_WORDS = ["on", "yes", "true", "1", "off", "no", "false", "0"]

# Answers other than success, with what they mean to a client.
PROBLEMS = {
    "400": "Malformed body: not parseable, not UTF-8, nested too deeply, a file part.",
    "403": "The form requires posts from its own website, and this one came from elsewhere.",
    "404": "No form by this name.",
    "413": "The body is larger than the limit, or has too many fields.",
    "415": "Not form-encoded, multipart or JSON.",
    "422": "One or more fields are invalid; `errors` names each one.",
    "429": "Too many submissions from this address, email or phone; wait Retry-After seconds.",
    "503": "The database is unavailable; nothing was stored. Retry after Retry-After seconds.",
}


def _text(max_length: int, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length, **extra}


def _fields(config: AppConfig, *, json_body: bool) -> dict[str, Any]:
    flag: dict[str, Any] = {"type": "string", "enum": FLAG_WORDS}
    if json_body:
        flag = {"oneOf": [{"type": "boolean"}, flag]}
    programs = sorted({*config.programs, *(v.lower() for v in config.programs.values())})
    properties: dict[str, Any] = {
        name: _text(limit) for name, limit in MAX_LENGTHS.items() if name not in {"email"}
    }
    properties.update(
        {
            "email": _text(MAX_LENGTHS["email"], format="email"),
            "_replyto": _text(MAX_LENGTHS["email"], format="email"),
            "for_whom": {"type": "string", "enum": sorted(set(FOR_WHOM.values()))},
            "preferred_contact": {"type": "string", "enum": sorted(set(PREFERRED_CONTACT))},
            "state": _text(40, description="US state: two-letter code or name"),
            "program": {"type": "string", "enum": programs} if programs else _text(64),
            "_language": {"type": "string", "enum": list(LANGUAGES)},
            "_gotcha": _text(200, description="Honeypot: leave empty"),
            "_ts": _text(200, description="Time-trap token from our form page"),
            **{name: _text(4096) for name in CAPTCHA_FIELDS},
            **dict.fromkeys(FLAGS, flag),
        }
    )
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": ["name", "consent"],
        "anyOf": [{"required": ["email"]}, {"required": ["phone"]}],
        "additionalProperties": _text(MAX_EXTRA_VALUE),
        "maxProperties": 60,
    }
    return schema


def _problem_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["ok", "message", "errors"],
        "properties": {
            "ok": {"type": "boolean", "enum": [False]},
            "message": {"type": "string", "example": FAILURE_MESSAGE},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field", "code", "message"],
                    "properties": {
                        "field": {"type": "string"},
                        "code": {"type": "string", "example": "TYPE_EMAIL"},
                        "message": {"type": "string"},
                    },
                },
            },
        },
    }


def _problem(description: str, retry_after: bool) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Problem"}},
            "text/html": {"schema": {"type": "string"}},
        },
    }
    if retry_after:
        answer["headers"] = {
            "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}
        }
    return answer


def openapi_document(settings: Settings, config: AppConfig) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "202": {
            "description": "Stored durably and queued (JSON clients).",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}},
        },
        "303": {
            "description": "Stored durably and queued (browsers): redirect to `_next` or /thanks.",
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
    }
    for status, description in PROBLEMS.items():
        responses[status] = _problem(description, retry_after=status in {"429", "503"})
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": f"{config.organization.name} intake",
            "version": API_VERSION,
            "description": (
                "Website contact forms post here. JSON answers for scripts (XHR header, "
                "Accept naming JSON first, or a JSON body), redirects and pages for browsers."
            ),
        },
        "servers": [{"url": settings.public_url.rstrip("/")}],
        "paths": {
            "/f/{form}": {
                "post": {
                    "operationId": "submitForm",
                    "summary": "Submit a form",
                    "parameters": [
                        {
                            "name": "form",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "enum": sorted(config.forms)},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Submission"}
                            },
                            "application/x-www-form-urlencoded": {
                                "schema": {"$ref": "#/components/schemas/FormSubmission"}
                            },
                            "multipart/form-data": {
                                "schema": {"$ref": "#/components/schemas/FormSubmission"}
                            },
                        },
                    },
                    "responses": responses,
                }
            }
        },
        "components": {
            "schemas": {
                "Submission": _fields(config, json_body=True),
                "FormSubmission": _fields(config, json_body=False),
                "Accepted": {
                    "type": "object",
                    "required": ["ok", "id", "next", "message"],
                    "properties": {
                        "ok": {"type": "boolean", "enum": [True]},
                        "id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                        "next": {"type": "string"},
                        "message": {"type": "string", "example": SUCCESS_MESSAGE},
                    },
                },
                "Problem": _problem_schema(),
            }
        },
    }


async def openapi(request: Request) -> Response:
    state: AppState = request.app.state.intake
    return JSONResponse(openapi_document(state.settings, state.config))
