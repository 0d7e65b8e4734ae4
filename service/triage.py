"""Crisis triage: does a message mention suicide, self-harm, overdose or immediate danger?

A safety net, not a clinical assessment. Matching is deliberately negation-naive: "I am not
suicidal" is flagged too, because a false alarm costs a prompt call while a miss can cost a life.
Admissions staff make the judgment; this only makes sure they see the message first.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

# Phrases, lower-case and without accents, matched on word boundaries. Keep them specific enough
# that everyday words do not trip them ("kill time"); test every addition (tests/test_triage.py).
CRISIS_PHRASES_EN = (
    "suicide",
    "suicidal",
    "kill myself",
    "killing myself",
    "end my life",
    "ending my life",
    "end it all",
    "take my own life",
    "want to die",
    "wanna die",
    "better off dead",
    "no reason to live",
    "not want to live",
    "don't want to live",
    "dont want to live",
    "don't want to be alive",
    "self harm",
    "self-harm",
    "hurt myself",
    "hurting myself",
    "cutting myself",
    "overdose",
    "overdosed",
    "overdosing",
    "od'd",
    "narcan",
    "naloxone",
    "not breathing",
    "unresponsive",
    "passed out and",
    "going to kill",
    "gonna kill",
    "has a gun",
    "have a gun",
    "with a knife",
    "in danger",
    "immediate danger",
    "emergency",
    "threatening to",
)
CRISIS_PHRASES_ES = (
    "suicidio",
    "suicida",
    "suicidarme",
    "matarme",
    "quitarme la vida",
    "quiero morir",
    "quiero morirme",
    "no quiero vivir",
    "acabar con mi vida",
    "hacerme dano",
    "autolesion",
    "cortarme",
    "sobredosis",
    "no respira",
    "inconsciente",
    "en peligro",
    "emergencia",
    "tiene un arma",
    "amenaza con",
)
CRISIS_PHRASES = CRISIS_PHRASES_EN + CRISIS_PHRASES_ES

_PATTERN = re.compile(
    r"(?<![a-z])("
    + "|".join(re.escape(p) for p in sorted(CRISIS_PHRASES, key=len)[::-1])
    + r")(?![a-z])"
)


_WHITESPACE = re.compile(r"\s+")


def fold(text: str) -> str:
    """Lower-case, strip accents and unify apostrophes, so 'Sobredósis' matches too."""
    if text.isascii():  # nothing to decompose or unify (most messages)
        return _WHITESPACE.sub(" ", text.lower())
    decomposed = unicodedata.normalize("NFKD", text.lower())
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _WHITESPACE.sub(" ", stripped.replace("\u2019", "'").replace("\u2018", "'"))


def free_text(person: dict[str, Any], subject: str = "") -> list[str]:
    """Every field a person writes freely: where a crisis may be mentioned."""
    texts = [str(person.get(key) or "") for key in ("message", "best_time", "insurance")]
    texts.extend(str(v) for v in dict(person.get("extras") or {}).values())
    texts.append(subject)
    return texts


def crisis_phrases(*texts: str) -> list[str]:
    """The crisis phrases found in the texts, in order of appearance."""
    found: list[str] = []
    for text in texts:
        found.extend(match.group(1) for match in _PATTERN.finditer(fold(text)))
    return found


def is_urgent(*texts: str) -> bool:
    return bool(crisis_phrases(*texts))
