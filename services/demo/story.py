"""The demo's scripted story, as plain data: who links, joins, likes, reposts and leaves.

Each step is a list of changes to the simulated social network, the groups a
collection must read before the step's effects can show, and the balances the
members must have once the step has flowed through every service. The expected
figures follow the demo offers in ``deploy/demo/offers`` (welcome 50 with a push
message, joining 20, likes 5 then 1 up to 15 a month, comments 3, reposts 10,
undo deducts what the original earned), so the e2e tests and the demo check the
same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

VK_GROUP = 1001
OK_GROUP = 52_000_000_000_001


@dataclass(frozen=True)
class Member:
    member_id: str
    network: Literal["vk", "ok", "apple"]
    social_user_id: str

    @property
    def user_id(self) -> int:
        return int(self.social_user_id)


ALICE = Member("alice", "vk", "700001")
BOB = Member("bob", "vk", "700002")
CAROL = Member("carol", "ok", "700003")
DAVE = Member("dave", "apple", "000451.dave.apple")
EVE = Member("eve", "vk", "700005")  # never links: her activity is logged but earns nothing

LINKED = (ALICE, BOB, CAROL, DAVE)


@dataclass(frozen=True)
class Change:
    """One request to the simulator's control API (``POST``/``DELETE`` ``path`` with ``body``).

    Paths may name a post as ``{post:N}``: the N-th post the story created in that group.
    """

    method: Literal["POST", "DELETE"]
    path: str
    body: dict[str, object] | None = None


@dataclass(frozen=True)
class StoryLink:
    member: Member
    registration: bool = False


@dataclass(frozen=True)
class Step:
    title: str
    links: tuple[StoryLink, ...] = ()
    changes: tuple[Change, ...] = ()
    collect: tuple[tuple[str, int], ...] = ()
    balances: dict[str, int] = field(default_factory=dict)


def _vk(path: str) -> str:
    return f"/_control/groups/vk/{VK_GROUP}{path}"


def _ok(path: str) -> str:
    return f"/_control/groups/ok/{OK_GROUP}{path}"


NEW_VK_POSTS = 12

STORY: tuple[Step, ...] = (
    Step(
        "Four members link a social profile in the Personal Account (welcome bonus, push message)",
        links=(
            StoryLink(ALICE, registration=True),
            StoryLink(BOB),
            StoryLink(CAROL),
            StoryLink(DAVE),
        ),
        balances={"alice": 50, "bob": 50, "carol": 50, "dave": 50},
    ),
    Step(
        "Alice, Bob and Eve join the VK group; Carol joins the OK group",
        changes=(
            Change("POST", _vk("/members"), {"add": [ALICE.user_id, BOB.user_id, EVE.user_id]}),
            Change("POST", _ok("/members"), {"add": [CAROL.user_id]}),
        ),
        collect=(("vk", VK_GROUP), ("ok", OK_GROUP)),
        balances={"alice": 70, "bob": 70, "carol": 70, "dave": 50},
    ),
    Step(
        "The brand publishes 12 VK posts and one OK topic; Alice likes all 12 (over the monthly "
        "cap of 15), Bob likes the first, Eve likes three",
        changes=(
            *(Change("POST", _vk("/posts"), {}) for _ in range(NEW_VK_POSTS)),
            Change("POST", _ok("/posts"), {}),
            *(
                Change("POST", _vk(f"/posts/{{post:{n}}}/likes"), {"user_id": ALICE.user_id})
                for n in range(NEW_VK_POSTS)
            ),
            Change("POST", _vk("/posts/{post:0}/likes"), {"user_id": BOB.user_id}),
            *(
                Change("POST", _vk(f"/posts/{{post:{n}}}/likes"), {"user_id": EVE.user_id})
                for n in range(3)
            ),
        ),
        collect=(("vk", VK_GROUP), ("ok", OK_GROUP)),
        balances={"alice": 85, "bob": 75, "carol": 70, "dave": 50},
    ),
    Step(
        "Bob takes his like back (the 5 points it earned are deducted)",
        changes=(Change("DELETE", _vk(f"/posts/{{post:0}}/likes/{BOB.user_id}")),),
        collect=(("vk", VK_GROUP),),
        balances={"alice": 85, "bob": 70, "carol": 70, "dave": 50},
    ),
    Step(
        "Bob likes the same post again (once per object: nothing new) and reposts another; "
        "Carol comments on the OK topic",
        changes=(
            Change("POST", _vk("/posts/{post:0}/likes"), {"user_id": BOB.user_id}),
            Change("POST", _vk("/posts/{post:1}/reposts"), {"user_id": BOB.user_id}),
            Change("POST", _ok("/posts/{post:0}/comments"), {"author_id": CAROL.user_id}),
        ),
        collect=(("vk", VK_GROUP), ("ok", OK_GROUP)),
        balances={"alice": 85, "bob": 80, "carol": 73, "dave": 50},
    ),
    Step(
        "Bob deletes his repost",
        changes=(Change("DELETE", _vk(f"/posts/{{post:1}}/reposts/{BOB.user_id}")),),
        collect=(("vk", VK_GROUP),),
        balances={"alice": 85, "bob": 70, "carol": 73, "dave": 50},
    ),
    Step(
        "Bob leaves the VK group (the joining bonus is taken back)",
        changes=(Change("POST", _vk("/members"), {"remove": [BOB.user_id]}),),
        collect=(("vk", VK_GROUP),),
        balances={"alice": 85, "bob": 50, "carol": 73, "dave": 50},
    ),
)

FINAL_BALANCES = STORY[-1].balances
WELCOME_MESSAGES = len(LINKED)
