"""The TOML configuration: the built-in default loads, and mistakes are named precisely."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import ConfigError, load_config, parse_config


def test_default_config_defines_contact() -> None:
    config = load_config()
    assert "contact" in config.forms
    assert config.organization.timezone == "America/Los_Angeles"
    assert config.organization.hours["monday"] == (8 * 60, 20 * 60)
    assert set(config.forms["contact"].programs) == set(config.programs)


def minimal(**extra: object) -> dict:
    return {"forms": {"contact": {}}, **extra}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "at least one"),
        (minimal(organization={"timezone": "Mars/Olympus"}), "time zone"),
        (minimal(organization={"hours": {"funday": "09:00-17:00"}}), "weekday"),
        (minimal(organization={"hours": {"monday": "17:00-09:00"}}), "closing"),
        (minimal(organization={"hours": {"monday": "9am to 5pm"}}), "HH:MM"),
        (minimal(routes=[{"when": {"colour": "red"}, "to": ["a@x.org"]}]), "unknown condition"),
        (minimal(routes=[{"when": {"form": "contact"}}]), "needs 'to'"),
        (minimal(routes=[{"to": ["a@x.org"], "webhook": {"url": "ftp://x"}}]), "http"),
        ({"forms": {"c": {"programs": ["spa"]}}}, "not in"),
        ({"forms": {"c": {"captcha": {"provider": "acme"}}}}, "captcha.provider"),
    ],
)
def test_mistakes_are_named(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_routes_match_first_rule(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[forms.contact]\n[[routes]]\nname="es"\nwhen={language="es"}\nto=["es@x.org"]\n'
        '[[routes]]\nname="urgent"\nwhen={urgent=true, state=["CA","NV"]}\nto=["u@x.org"]\n'
    )
    config = load_config(path)
    es, urgent = config.routes
    assert es.matches({"language": "es"}) and not es.matches({"language": "en"})
    assert urgent.matches({"urgent": "true", "state": "NV"})
    assert not urgent.matches({"urgent": "true", "state": "TX"})


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[forms\n")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_config(bad)
