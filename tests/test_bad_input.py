"""Bad input gets a clear status, the node keeps running and its store is unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.app.verify import PROCESS_MIN as VERIFIER_PROCESS_MIN
from node.core.limits import DEFAULT_LIMITS
from node.crypto import sign_alert
from node.rpc.client import AlertClient
from tests.factory import ADDRESS, DOMAIN, Author, now_ms
from tests.procs import NodeProcess, children, new_node

INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED

MEMBER = Author()
STRANGER = Author()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = new_node(tmp_path_factory.mktemp("node"), "acme", {"m": MEMBER.key})
    yield proc
    proc.kill()


@pytest.fixture
async def client(node: NodeProcess) -> AsyncIterator[AlertClient]:
    async with AlertClient(node.address) as c:
        yield c


def raw(body: bytes, signature: bytes = b"") -> alert_pb2.SignedAlert:
    return alert_pb2.SignedAlert(body=body, signature=signature)


def tampered() -> alert_pb2.SignedAlert:
    signed = MEMBER.sign(MEMBER.alert(), advance=False)
    body = bytearray(signed.body)
    body[-1] ^= 1
    return raw(bytes(body), signed.signature)


def undecodable(author: Author) -> alert_pb2.SignedAlert:
    """A body whose head (origin, seq, created_at_ms) reads, but not the whole of it: a
    title that is not UTF-8. The node admits by the head and decodes the rest later."""
    signed = author.sign(author.alert(), advance=False)
    body = signed.body + b"\x4a\x02\xff\xfe"  # field 9 (title) again, not UTF-8
    return raw(body, sign_alert(author.identity, body))


def origin_twice() -> alert_pb2.SignedAlert:
    """A member's alert with a stranger's origin appended: protobuf reads the last one,
    and so must the node's admission (it is the stranger's alert)."""
    body = MEMBER.alert().SerializeToString() + b"\x0a\x20" + STRANGER.key
    return raw(body, sign_alert(STRANGER.identity, body))


CASES = {
    "body is not a protobuf": (
        lambda: raw(b"\xff\xff\xff\xff", b"\0" * 64),
        INVALID,
        "not a valid",
    ),
    "missing signature": (lambda: raw(MEMBER.alert().SerializeToString()), INVALID, "unsigned"),
    "bad signature": (tampered, INVALID, "does not verify"),
    "signed by another key": (
        lambda: STRANGER.sign(MEMBER.alert(), advance=False),
        INVALID,
        "does not verify",
    ),
    "unknown origin": (lambda: STRANGER.sign(STRANGER.alert(), advance=False), DENIED, "roster"),
    "a member's head, a body that does not decode": (
        lambda: undecodable(MEMBER),
        INVALID,
        "not a valid",
    ),
    # Decoding comes before the roster: junk is "not a valid", whoever it names.
    "a stranger's head, a body that does not decode": (
        lambda: undecodable(STRANGER),
        INVALID,
        "not a valid",
    ),
    "origin given twice, the last a stranger's": (origin_twice, DENIED, "roster"),
    "oversized body": (
        lambda: MEMBER.sign(MEMBER.alert(description="x" * DEFAULT_LIMITS.max_body_bytes), False),
        EXHAUSTED,
        "limit",
    ),
    "too many indicators": (
        lambda: MEMBER.sign(
            MEMBER.alert(
                indicators=[
                    (DOMAIN, f"d{i}.example") for i in range(DEFAULT_LIMITS.max_indicators + 1)
                ]
            ),
            False,
        ),
        EXHAUSTED,
        "indicators",
    ),
    "invalid address for its chain": (
        lambda: MEMBER.sign(MEMBER.alert(indicators=[(ADDRESS, "eip155:1:0x1234")]), False),
        INVALID,
        "indicator 0",
    ),
    "bad EIP-55 checksum": (
        lambda: MEMBER.sign(
            MEMBER.alert(
                indicators=[(ADDRESS, "eip155:1:0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD")]
            ),
            False,
        ),
        INVALID,
        "indicator 0",
    ),
    "timestamp far in the future": (
        lambda: MEMBER.sign(MEMBER.alert(created_at_ms=now_ms() + 3_600_000), False),
        INVALID,
        "future",
    ),
    "seq 0": (lambda: MEMBER.sign(MEMBER.alert(seq=0), False), INVALID, "seq"),
    "unknown category": (
        lambda: MEMBER.sign(MEMBER.alert(category=99), False),
        INVALID,
        "category",
    ),
}


@pytest.mark.parametrize("case", CASES)
async def test_bad_alert_is_refused_and_nothing_changes(client: AlertClient, case: str) -> None:
    make, code, words = CASES[case]
    before = await client.stats()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.ingest([make()])
    assert err.value.code() == code, err.value.details()
    assert words in err.value.details()
    after = await client.stats()
    assert (after.alerts, after.digest) == (before.alerts, before.digest)


async def test_bad_alerts_inside_a_large_batch_are_rejected_one_by_one(
    node: NodeProcess, client: AlertClient
) -> None:
    """A batch this large is checked by the node's verifier processes; each bad alert
    still gets its own status and reason, and every good one is stored."""
    author = MEMBER
    assert VERIFIER_PROCESS_MIN <= 150
    bad = {case: make() for case, (make, _, _) in CASES.items()}
    batch: list[alert_pb2.SignedAlert] = []
    expected: list[str | None] = []
    cases = iter(bad.items())
    for i in range(150):
        if i % 10 == 5 and (case := next(cases, None)) is not None:
            batch.append(case[1])
            expected.append(case[0])
        else:
            batch.append(author.next(indicators=[(DOMAIN, f"good{i}.example")]))
            expected.append(None)
    before = await client.stats()
    response = await client.ingest(batch)
    assert len(response.results) == len(batch)
    for result, case in zip(response.results, expected, strict=True):
        if case is None:
            assert result.outcome == api.INGEST_OUTCOME_ACCEPTED, result.error
        else:
            _, code, words = CASES[case]
            assert result.outcome == api.INGEST_OUTCOME_REJECTED, case
            assert (result.code, words in result.error) == (code.value[0], True), result.error
    good = expected.count(None)
    assert (await client.stats()).alerts == before.alerts + good
    assert node.proc is not None and children(node.proc.pid), "no verifier process was used"
    assert "verifier process" not in node.log.read_text()  # none died or failed to start


async def test_malformed_request_bytes(node: NodeProcess, client: AlertClient) -> None:
    async with grpc.aio.insecure_channel(node.address) as channel:
        for method in ("Ingest", "Publish", "CheckIndicators"):
            call = channel.unary_unary(f"/alertmesh.v1.AlertService/{method}")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call(b"\x0a\xff\xff\xff\xff\x0f")
            assert err.value.code() == INVALID
            assert "not a valid alertmesh.v1." in (err.value.details() or "")
    assert (await client.stats()).node_name == "acme"


async def test_oversized_message_is_resource_exhausted(client: AlertClient) -> None:
    huge = [raw(b"x" * 1024 * 1024, b"") for _ in range(40)]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.ingest(huge)
    assert err.value.code() == EXHAUSTED


async def test_too_many_alerts_in_one_request(client: AlertClient) -> None:
    batch = [raw(b"", b"")] * (DEFAULT_LIMITS.max_batch + 1)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.ingest(batch)
    assert err.value.code() == EXHAUSTED and "at most" in (err.value.details() or "")


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        (api.PublishRequest(title="x"), "category"),
        (api.PublishRequest(category=1, title=""), "title"),
        (api.PublishRequest(category=1, title="x", confidence=101), "confidence"),
        (
            api.PublishRequest(
                category=1,
                title="x",
                indicators=[
                    alert_pb2.Indicator(
                        type=ADDRESS, value="bip122:000000000019d6689c085ae165831e93:bc1qnotvalid"
                    )
                ],
            ),
            "indicator",
        ),
    ],
)
async def test_bad_publish_is_invalid_argument(
    client: AlertClient, request_: api.PublishRequest, words: str
) -> None:
    before = await client.stats()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.publish(request_)
    assert err.value.code() == INVALID and words in (err.value.details() or "")
    assert (await client.stats()).alerts == before.alerts


async def test_bad_cursor_and_id(client: AlertClient) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.search(api.SearchAlertsRequest(page_token="not-a-token"))
    assert err.value.code() == INVALID
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.get(b"short")
    assert err.value.code() == INVALID
