"""Text hygiene for everything a person (or a bot) types into a form."""

from __future__ import annotations

import re
import unicodedata

# Bidirectional overrides and isolates can make an admissions email show text in a different order
# than it was typed (e.g. a reversed phone number); zero-width characters hide content.
_INVISIBLE = dict.fromkeys(
    map(ord, "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200b\u200e\u200f\ufeff"),
    None,
)
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")
# The opener of an RFC 2047 encoded word ("=?utf-8?q?...?="). Python's email package (3.11.7 at
# least; cf. CVE-2024-6923, CVE-2026-1299) decodes such words inside quoted display names and
# addresses when it writes a header, so "=0D=0ABcc:" typed into a name became a real Bcc header.
# No one-line field a person fills needs the syntax: it is broken apart ("= ?") at the edge.
_ENCODED_WORD_OPENER = re.compile(r"=\?(?=.*\?=)")


# ASCII text (nearly every submission) needs no normalization and has no invisible characters;
# its only control characters are C0 and DEL, so one translate does what the loop below does
# (a fifth of the time of accepting a submission went to that loop).
_ASCII_CONTROLS = {c: None for c in [*range(0x20), 0x7F] if chr(c) not in "\t\n"}
_ASCII_ONE_LINE = str.maketrans({**_ASCII_CONTROLS, ord("\t"): " ", ord("\n"): " "})
_ASCII_MULTILINE = str.maketrans({**_ASCII_CONTROLS, ord("\t"): " "})


def clean_text(value: str, *, multiline: bool = False) -> str:
    """NFC, no control or invisible formatting characters; CR/LF only where lines are allowed."""
    if value.isascii():
        text = value.replace("\r\n", "\n").replace("\r", "\n")
        text = text.translate(_ASCII_MULTILINE if multiline else _ASCII_ONE_LINE)
        return _tidy(text, multiline)
    return clean_any_text(value, multiline=multiline)


def clean_any_text(value: str, *, multiline: bool = False) -> str:
    """clean_text for any text, character by character (clean_text's path for non-ASCII)."""
    text = unicodedata.normalize("NFC", value).translate(_INVISIBLE)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    kept = []
    for ch in text:
        if ch == "\n":
            kept.append("\n" if multiline else " ")
        elif ch == "\t":
            kept.append(" ")
        elif unicodedata.category(ch) in {"Cc", "Cs", "Co", "Cn"} or ch in "\u2028\u2029\x85":
            kept.append(" " if ch in "\u2028\u2029\x85" else "")
        else:
            kept.append(ch)
    return _tidy("".join(kept), multiline)


def _tidy(text: str, multiline: bool) -> str:
    """Runs of spaces to one; at most one blank line in a row; encoded words defused."""
    if multiline:
        lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
        return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
    return _SPACES.sub(" ", defuse_encoded_words(text)).strip()


def defuse_encoded_words(text: str) -> str:
    """'=?utf-8?q?x?=' -> '= ?utf-8?q?x?=': text that no mail library will decode."""
    return _ENCODED_WORD_OPENER.sub("= ?", text)
