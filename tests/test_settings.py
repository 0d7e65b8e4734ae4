"""Settings: one typed object from the environment, secrets that never show themselves."""

from __future__ import annotations

import pytest

from service.settings import Secret, Settings, SettingsError


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings.database_url.startswith("sqlite:///") and settings.database_url.endswith(
        "var/intake.db"
    )
    assert settings.celery_broker_url == settings.redis_url


def test_values_are_typed() -> None:
    settings = Settings.from_env(
        {
            "INTAKE_SMTP_PORT": "2525",
            "INTAKE_ALLOWED_ORIGINS": "https://a.example, https://b.example",
            "INTAKE_DEV_MODE": "yes",
            "INTAKE_RETRY_BASE_SECONDS": "1.5",
            "INTAKE_SMTP_PASSWORD": "hunter2",
            "INTAKE_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
        }
    )
    assert settings.smtp_port == 2525
    assert settings.allowed_origins == ("https://a.example", "https://b.example")
    assert settings.dev_mode is True
    assert settings.retry_base_seconds == 1.5
    assert settings.smtp_password.reveal() == "hunter2"
    assert "hunter2" not in repr(settings)
    assert settings.celery_broker_url.startswith("amqp://")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"INTAKE_SMTP_PORT": "twenty"}, "INTAKE_SMTP_PORT"),
        ({"INTAKE_DEV_MODE": "perhaps"}, "INTAKE_DEV_MODE"),
        ({"INTAKE_SMTP_SECURITY": "ssl3"}, "INTAKE_SMTP_SECURITY"),
        (
            {"INTAKE_LEASE_SECONDS": "5", "INTAKE_TASK_TIME_LIMIT_SECONDS": "10"},
            "INTAKE_LEASE_SECONDS",
        ),
        ({"INTAKE_ADMISSIONS_EMAIL": ""}, "INTAKE_ADMISSIONS_EMAIL"),
        # Zero would let the sweeper publish the rows it has just published, batch after batch.
        ({"INTAKE_REQUEUE_AFTER_SECONDS": "0"}, "INTAKE_REQUEUE_AFTER_SECONDS must be positive"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_as_env_round_trips() -> None:
    settings = Settings(
        smtp_password=Secret("pw"), oncall_email=("a@x.org", "b@x.org"), dev_mode=True
    )
    assert Settings.from_env(settings.as_env()) == settings
