"""The verdict of a value (node/core/verdict.py): who flags it, retractions, updates,
sightings, disputes, expiry, allowlisting, and the scoring rule, as tables of facts."""

from __future__ import annotations

import pytest

from node._pb.alertmesh.v1 import alert_pb2
from node.core.verdict import (
    DAY_MS,
    DISPUTE,
    RETRACTION,
    SIGHTING,
    UPDATE,
    Fact,
    State,
    score,
    verdict,
)

NOW = 1_700_000_000_000
PHISHING = alert_pb2.CATEGORY_PHISHING
SANCTIONS = alert_pb2.CATEGORY_SANCTIONS
HIGH, LOW = alert_pb2.SEVERITY_HIGH, alert_pb2.SEVERITY_LOW


def fid(n: int) -> bytes:
    return bytes([n]) * 32


def fact(
    n: int,
    member: str,
    *,
    links: tuple[tuple[int, int], ...] = (),  # (kind, target n; 0: about the value)
    mentions: bool = True,
    age_days: float = 0,
    expires_in_days: float = 0,
    confidence: int = 80,
    severity: int = HIGH,
    category: int = PHISHING,
    count: int = 0,
    description: str = "",
) -> Fact:
    created = NOW - int(age_days * DAY_MS)
    return Fact(
        id=fid(n),
        member=member,
        created_at_ms=created,
        expires_at_ms=NOW + int(expires_in_days * DAY_MS) if expires_in_days else 0,
        category=category,
        severity=severity,
        confidence=confidence,
        title=f"alert {n}",
        description=description,
        links=tuple(
            alert_pb2.AlertLink(
                kind=alert_pb2.LinkKind.ValueType(k), alert_id=fid(t) if t else b"", count=count
            )
            for k, t in links
        ),
        mentions_value=mentions,
    )


# (story, facts, expected state, expected flagging members, expected active alert numbers)
CASES = [
    ("nothing mentions it", [], State.NOT_FLAGGED, (), ()),
    ("one member flags it", [fact(1, "a")], State.FLAGGED, ("a",), (1,)),
    (
        "two members flag it",
        [fact(1, "a"), fact(2, "b", severity=LOW)],
        State.FLAGGED,
        ("a", "b"),
        (1, 2),
    ),
    (
        "its author retracts it",
        [fact(1, "a"), fact(2, "a", links=((RETRACTION, 1),))],
        State.RETRACTED,
        (),
        (),
    ),
    (
        "another member's retraction is refused",
        [fact(1, "a"), fact(2, "b", links=((RETRACTION, 1),))],
        State.FLAGGED,
        ("a",),
        (1,),
    ),
    (
        "a retraction of one alert leaves another member's alert",
        [fact(1, "a"), fact(2, "b"), fact(3, "a", links=((RETRACTION, 1),))],
        State.FLAGGED,
        ("b",),
        (2,),
    ),
    (
        "an update that keeps the value: the newest version only",
        [fact(1, "a", age_days=10), fact(2, "a", links=((UPDATE, 1),))],
        State.FLAGGED,
        ("a",),
        (2,),
    ),
    (
        "an update that drops the value",
        [fact(1, "a"), fact(2, "a", links=((UPDATE, 1),), mentions=False)],
        State.NOT_FLAGGED,
        (),
        (),
    ),
    (
        "a retraction of the first version retracts its updates",
        [
            fact(1, "a"),
            fact(2, "a", links=((UPDATE, 1),)),
            fact(3, "a", links=((RETRACTION, 1),)),
        ],
        State.RETRACTED,
        (),
        (),
    ),
    (
        "another member cannot update it",
        [fact(1, "a"), fact(2, "b", links=((UPDATE, 1),), mentions=False)],
        State.FLAGGED,
        ("a",),
        (1,),
    ),
    ("an expired alert stops flagging", [fact(1, "a", expires_in_days=-1)], State.EXPIRED, (), ()),
    (
        "an alert before its expiry flags",
        [fact(1, "a", expires_in_days=1)],
        State.FLAGGED,
        ("a",),
        (1,),
    ),
    (
        "a sighting alone flags nothing",
        [fact(1, "b", links=((SIGHTING, 0),))],
        State.NOT_FLAGGED,
        (),
        (),
    ),
    (
        "a dispute alone flags nothing",
        [fact(1, "b", links=((DISPUTE, 0),))],
        State.NOT_FLAGGED,
        (),
        (),
    ),
    (
        "an alert refused for one link supersedes nothing by its others",
        [
            fact(1, "a"),
            fact(2, "b"),
            fact(3, "b", mentions=False, links=((UPDATE, 2), (UPDATE, 1))),
        ],
        State.FLAGGED,
        ("a", "b"),
        (1, 2),
    ),
]


@pytest.mark.parametrize(
    ("story", "facts", "state", "members", "active"), CASES, ids=[c[0] for c in CASES]
)
def test_verdict_table(
    story: str, facts: list[Fact], state: State, members: tuple[str, ...], active: tuple[int, ...]
) -> None:
    v = verdict(facts, now_ms=NOW)
    assert v.state is state, story
    assert v.members == members
    assert set(v.alert_ids) == {fid(n) for n in active}
    assert v.flagged == (state is State.FLAGGED)


def test_a_retraction_says_who_when_and_why() -> None:
    v = verdict(
        [fact(1, "a"), fact(2, "a", links=((RETRACTION, 1),), description="wrong address")],
        now_ms=NOW,
    )
    [r] = v.retractions
    assert (r.alert_id, r.retraction_id, r.member, r.reason) == (
        fid(1),
        fid(2),
        "a",
        "wrong address",
    )
    assert r.retracted_at_ms == NOW and v.confidence == 0


def test_another_members_retraction_is_counted_as_refused() -> None:
    v = verdict([fact(1, "a"), fact(2, "b", links=((RETRACTION, 1),))], now_ms=NOW)
    assert v.refused_links == 1 and not v.retractions


def test_include_expired_still_shows_an_expired_alert() -> None:
    v = verdict([fact(1, "a", expires_in_days=-1)], now_ms=NOW, include_expired=True)
    assert v.state is State.FLAGGED


def test_an_allowlisted_value_is_never_flagged() -> None:
    v = verdict([fact(1, "a")], now_ms=NOW, allowlisted=True)
    assert v.state is State.ALLOWLISTED and not v.flagged and not v.alert_ids


def test_sightings_and_disputes_by_others_are_counted_once_per_member() -> None:
    facts = [
        fact(1, "a"),
        fact(2, "b", links=((SIGHTING, 1),), count=5),
        fact(3, "b", links=((SIGHTING, 0),), count=2),  # b again: counts once
        fact(4, "c", links=((SIGHTING, 0),)),  # about the value itself
        fact(5, "a", links=((SIGHTING, 1),)),  # the flagger's own: not corroboration
        fact(6, "d", links=((DISPUTE, 1),), description="our customer"),
        fact(7, "e", links=((SIGHTING, 9),)),  # about an alert not behind this value
    ]
    v = verdict(facts, now_ms=NOW)
    assert (v.sightings, v.sighting_count, v.disputes) == (2, 6, 1)
    assert [(d.member, d.reason) for d in v.dispute_details] == [("d", "our customer")]


def test_sightings_of_an_old_version_count_for_the_new_one() -> None:
    facts = [
        fact(1, "a"),
        fact(2, "b", links=((SIGHTING, 1),)),
        fact(3, "a", links=((UPDATE, 1),)),
    ]
    assert verdict(facts, now_ms=NOW).sightings == 1


# The scoring rule: (active alerts, sighting members, dispute members) -> confidence.
SCORES = [
    ([fact(1, "a", confidence=80)], 0, 0, 80),
    ([fact(1, "a", confidence=80, age_days=30)], 0, 0, 40),  # one phishing half-life
    ([fact(1, "a", confidence=80, age_days=60)], 0, 0, 20),
    ([fact(1, "a", confidence=80, age_days=3650, category=SANCTIONS)], 0, 0, 80),  # no decay
    ([fact(1, "a", confidence=50), fact(2, "b", confidence=50)], 0, 0, 75),  # 1-(.5*.5)
    ([fact(1, "a", confidence=50), fact(2, "a", confidence=30)], 0, 0, 50),  # per member: best
    ([fact(1, "a", confidence=60)], 1, 0, 70),  # .6 + .4*.25
    ([fact(1, "a", confidence=60)], 9, 0, 87),  # at most 4 count: 1 - .4 * .75**4
    ([fact(1, "a", confidence=80)], 0, 1, 40),
    ([fact(1, "a", confidence=80)], 0, 2, 20),
    ([], 3, 0, 0),
]


@pytest.mark.parametrize(("flags", "sightings", "disputes", "expected"), SCORES)
def test_scoring_rule(flags: list[Fact], sightings: int, disputes: int, expected: int) -> None:
    assert score(flags, sightings, disputes, NOW) == expected


def test_a_dispute_lowers_the_verdict_and_a_sighting_raises_it() -> None:
    base = [fact(1, "a", confidence=60)]
    plain = verdict(base, now_ms=NOW).confidence
    disputed = verdict([*base, fact(2, "b", links=((DISPUTE, 1),))], now_ms=NOW).confidence
    seen = verdict([*base, fact(3, "c", links=((SIGHTING, 1),))], now_ms=NOW).confidence
    assert disputed < plain < seen


def test_first_and_last_seen_span_alerts_and_sighting_windows() -> None:
    sighting = fact(2, "b", links=((SIGHTING, 1),))
    link = alert_pb2.AlertLink(
        kind=SIGHTING, alert_id=fid(1), first_seen_ms=NOW - 5 * DAY_MS, last_seen_ms=NOW - DAY_MS
    )
    sighting = Fact(**{**{f: getattr(sighting, f) for f in Fact.__slots__}, "links": (link,)})
    v = verdict([fact(1, "a", age_days=2), sighting], now_ms=NOW)
    assert (v.first_seen_ms, v.last_seen_ms) == (NOW - 5 * DAY_MS, NOW - DAY_MS)
