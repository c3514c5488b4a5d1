"""An Alerts frame that answers an IWANT/GRAFT says so on the wire (Alerts.answer), and
the receiving node tells its engine, so that catch-up rule 7 does not take the gap it
fills for the tree bringing more (tests/test_catchup_burst.py has the rule itself).
Older peers never set the field: their frames read as pushes, as before."""

from __future__ import annotations

from collections.abc import Sequence

from node._pb.alertmesh.v1 import peer_service_pb2 as pb
from node.app.peer_session import encode
from node.core import peer_engine as pe
from node.core.alerts import alert_id
from tests.factory import ADDRESS
from tests.test_relay_forward import HeldStore, three_nodes, two_copies_of_one_slot, until


def test_an_answer_frame_is_marked_on_the_wire_and_a_push_is_not() -> None:
    assert encode(pe.AlertsFrame((), answer=True)).alerts.answer
    assert not encode(pe.AlertsFrame(())).alerts.answer
    assert not encode(pe.AlertsFrame((), catchup=True)).alerts.answer


async def test_the_receiver_reports_answered_alerts_as_answers() -> None:
    async with three_nodes(HeldStore()) as net:
        first, _, author = two_copies_of_one_slot(net)
        second = author.next(indicators=[(ADDRESS, "eip155:1:0x" + "77" * 20)])
        reported: list[tuple[bytes, bool]] = []
        engine = net.peers["R"].engine
        real = engine.alerts_received

        def spy(
            s: pe.PeerSession[object], received: Sequence[pe.Received], *args: object
        ) -> list[pe.Action[object]]:
            reported.extend((r.id, r.answer) for r in received)
            return real(s, received, *args)  # type: ignore[arg-type]

        engine.alerts_received = spy  # type: ignore[method-assign,assignment]
        to_r = net.ends[("O", "R")].out
        await to_r.put(pb.PeerFrame(alerts=pb.Alerts(alerts=[first], answer=True)))
        await to_r.put(pb.PeerFrame(alerts=pb.Alerts(alerts=[second])))  # a push, or older
        await until(lambda: len(reported) == 2, "both frames ingested")
        assert sorted(reported) == sorted(
            [(alert_id(first.body), True), (alert_id(second.body), False)]
        )
