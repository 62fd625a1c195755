"""One set of KAFKA_* settings configures the Faust workers as it does the confluent clients."""

from __future__ import annotations

import faust
import pytest
from pydantic import SecretStr

from services.detector.faust_app import broker_credentials
from services.runtime.settings import KafkaSettings


def test_plaintext_needs_no_credentials() -> None:
    assert broker_credentials(KafkaSettings(security_protocol="PLAINTEXT")) is None


def test_sasl_over_tls_carries_the_user_and_a_tls_context() -> None:
    credentials = broker_credentials(
        KafkaSettings(
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username="svc",
            sasl_password=SecretStr("s3cret"),
        )
    )
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.username == "svc"
    assert credentials.password == "s3cret"
    assert credentials.ssl_context is not None


def test_tls_alone_gives_ssl_credentials() -> None:
    assert isinstance(
        broker_credentials(KafkaSettings(security_protocol="SSL")), faust.SSLCredentials
    )


def test_sasl_without_a_mechanism_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="KAFKA_SASL_MECHANISM"):
        # explicit None: the environment (stack.env) may name a mechanism
        broker_credentials(KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism=None))
