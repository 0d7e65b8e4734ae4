"""The consent a person gives, and its provenance: which text, when, from where."""

from __future__ import annotations

import hashlib

# The text shown beside the consent checkbox. Changing it changes its hash, so every stored
# submission records exactly which wording the person agreed to.
CONSENT_TEXT = {
    "en": (
        "I agree to be contacted about my inquiry by phone, text or email at the details I gave. "
        "I understand this form is not for emergencies."
    ),
    "es": (
        "Acepto que me contacten sobre mi consulta por teléfono, mensaje de texto o correo "
        "electrónico con los datos que di. Entiendo que este formulario no es para emergencias."
    ),
}


def consent_text(language: str) -> str:
    return CONSENT_TEXT.get(language, CONSENT_TEXT["en"])


def consent_hash(language: str) -> str:
    return hashlib.sha256(consent_text(language).encode("utf-8")).hexdigest()
