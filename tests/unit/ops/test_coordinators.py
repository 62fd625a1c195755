"""Where the broker places a group or a transactional id (no broker needed)."""

from __future__ import annotations

from services.ops.chaos import Coordinators, coordinator_partition, java_string_hash


def test_java_string_hash_matches_java() -> None:
    # Values of String.hashCode() as Java computes them.
    assert java_string_hash("") == 0
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("polygenelubricants") == 2**31  # Integer.MIN_VALUE
    assert java_string_hash("Aa") == java_string_hash("BB")  # Java's famous collision


def test_partition_is_math_abs_of_the_hash_not_a_sign_mask() -> None:
    assert coordinator_partition("polygenelubricants", 50) == 0  # Utils.abs(MIN_VALUE) == 0
    negative = "social-loyalty.rules.local-1"
    signed = java_string_hash(negative) - (java_string_hash(negative) >= 2**31) * 2**32
    assert coordinator_partition(negative, 50) == abs(signed) % 50


def test_roles_of_a_broker() -> None:
    found = Coordinators(group=2, transactions={"g.local-1": 2, "g.local-2": 3})
    assert found.roles_of(2) == ["group coordinator", "transaction coordinator of g.local-1"]
    assert found.roles_of(3) == ["transaction coordinator of g.local-2"]
    assert found.roles_of(1) == []
