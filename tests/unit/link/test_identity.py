"""Identity settings from the environment, and the proof models' shape."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from services.link.identity import AppleProof, OkProof, Proof, VkIdProof
from services.link.links import SignInRequest
from services.link.settings import LinkSettings


def test_identity_settings_from_nested_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINK_IDENTITY__VK__CLIENT_ID", "54000001")
    monkeypatch.setenv("LINK_IDENTITY__OK__CLIENT_SECRET", "ok-s3cret")
    monkeypatch.setenv("LINK_IDENTITY__APPLE__JWKS_URL", "http://127.0.0.1:8081/apple/auth/keys")
    identity = LinkSettings().identity
    assert identity.vk.client_id == "54000001"
    assert identity.vk.token_url == "https://id.vk.com/oauth2/auth"  # real endpoints by default
    assert identity.ok.token_url == "https://api.ok.ru/oauth/token.do"
    assert identity.ok.api_url == "https://api.ok.ru/fb.do"
    assert identity.apple.issuer == "https://appleid.apple.com"
    assert identity.apple.jwks_url == "http://127.0.0.1:8081/apple/auth/keys"
    assert identity.apple.client_id is None  # not configured: Apple proofs answer 501
    assert "ok-s3cret" not in repr(identity)


def test_the_proof_is_chosen_by_network_and_never_carries_a_user_id() -> None:
    proof: TypeAdapter[VkIdProof | OkProof | AppleProof] = TypeAdapter(Proof)
    vk = proof.validate_python(
        {
            "network": "vk",
            "code": "c",
            "code_verifier": "v" * 43,
            "device_id": "d",
            "redirect_uri": "https://a.example/cb",
        }
    )
    assert isinstance(vk, VkIdProof)
    ok = proof.validate_python({"network": "ok", "code": "c", "redirect_uri": "https://a/cb"})
    assert isinstance(ok, OkProof)
    with pytest.raises(ValidationError):  # a claimed user id is not accepted
        proof.validate_python({**ok.model_dump(), "social_user_id": "42"})
    with pytest.raises(ValidationError):  # a PKCE verifier is 43-128 characters
        proof.validate_python({**vk.model_dump(), "code_verifier": "short"})
    with pytest.raises(ValidationError):
        proof.validate_python({"network": "fb", "code": "c"})


def test_sign_in_takes_register_by_its_public_name() -> None:
    body = SignInRequest.model_validate(
        {"proof": {"network": "apple", "id_token": "t", "nonce": "n" * 16}, "register": True}
    )
    assert body.register_new is True and body.member_id is None
    assert SignInRequest.model_validate({"proof": body.proof}).register_new is False
