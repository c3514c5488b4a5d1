"""Bringing a member's lists in: `alertmesh import` and PublishBatch on a real node process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.interchange import lists
from node.interchange.importer import Defaults, plan
from node.interchange.model import ImportedAlert, ImportedIndicator
from node.rpc.client import AlertClient
from tests.factory import DOMAIN
from tests.procs import NodeProcess, alertmesh, new_node

# What a real public phishing list holds: the examples among good domains.
PHISHING_LIST = """\
# phishing domains, one per line
metamask-claim.example
ether_promo.kissr.com
FAß.example.
Wallet-Connect-Sync.example.   # a comment after a value
localhost
185.231.33.7
https://airdrop-claim.example/connect?ref=1
bad_registrable.com
domain:198.51.100.9

login.metamask-claim.example
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = new_node(tmp_path_factory.mktemp("node"), "acme", {})
    yield proc
    proc.kill()


@pytest.fixture
async def client(node: NodeProcess) -> AsyncIterator[AlertClient]:
    async with AlertClient(node.address) as c:
        yield c


def import_(
    node: NodeProcess, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.cli", "import", "--node", node.address, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def flagged(node: NodeProcess, *values: str) -> dict[str, bool]:
    out = alertmesh("check", "--node", node.address, "--json", *values, check=False)
    return {r["query"]: bool(r["matches"]) for r in json.loads(out.stdout)}


def stats(node: NodeProcess) -> int:
    return int(json.loads(alertmesh("stats", "--node", node.address, "--json").stdout)["alerts"])


def test_a_list_with_bad_values_publishes_the_good_ones_and_reports_each_bad_one(
    node: NodeProcess, tmp_path: Path
) -> None:
    path = tmp_path / "phishing.txt"
    path.write_text(PHISHING_LIST)
    done = import_(node, str(path), "--category", "phishing", "--severity", "high")
    assert done.returncode == 3, done.stderr
    refused = [line for line in done.stderr.splitlines() if line.startswith("refused")]
    assert len(refused) == 2, done.stderr
    assert "line 6: 'localhost'" in refused[0] and "at least two labels" in refused[0]
    assert "line 9: 'bad_registrable.com'" in refused[1] and "underscore" in refused[1]
    assert "imported 8 of 10 values" in done.stdout
    # Every good value is flagged, found by other spellings too; the IPs took the ip type.
    assert all(
        flagged(
            node,
            "https://www.metamask-claim.example/x",
            "Ether_Promo.KISSR.com",
            "https://faß.example/",
            "xn--fa-hia.example",
            "wallet-connect-sync.example",
            "185.231.33[.]7",
            "ip:198.51.100.9",
            "HTTPS://AIRDROP-CLAIM.example:443/connect?ref=1",
        ).values()
    )
    assert flagged(node, "fass.example", "kissr.com") == {
        "fass.example": False,  # IDNA 2003's spelling of faß is another domain
        "kissr.com": False,
    }


def test_importing_the_same_list_again_adds_nothing_and_stdin_works(
    node: NodeProcess, tmp_path: Path
) -> None:
    values = "\n".join(f"again-{i}.example" for i in range(60))
    path = tmp_path / "again.txt"
    path.write_text(values)
    first = import_(node, str(path), "--per-alert", "25")
    assert first.returncode == 0, first.stderr
    assert "3 new alerts, 0 already published" in first.stdout
    before = stats(node)
    again = import_(node, "-", "--per-alert", "25", stdin=values)
    assert again.returncode == 0, again.stderr
    assert "0 new alerts, 3 already published" in again.stdout
    assert stats(node) == before
    assert "import: 60/60 indicators sent" in again.stderr  # plain progress: not a terminal


async def test_a_csv_takes_type_and_metadata_from_its_columns(
    node: NodeProcess, client: AlertClient, tmp_path: Path
) -> None:
    path = tmp_path / "feed.csv"
    path.write_text(
        "Indicator, Type ,Category,Severity,TLP,Title,Confidence\n"
        "csv-drainer.example,domain,scam,critical,amber,Drainer kit,90\n"
        '"https://csv-drainer.example/a,b",url,scam,critical,amber,Drainer kit,90\n'
        "csv-rug.example,,rug-pull,,,,\n"
        "not a host,domain,scam,critical,amber,Drainer kit,90\n"
        "csv-odd.example,,no-such-category,,,,\n"
    )
    done = import_(node, str(path), "--severity", "low", "--title", "From the CSV")
    assert done.returncode == 3, done.stderr
    assert "line 5: 'not a host'" in done.stderr
    assert "line 6: 'csv-odd.example': unknown category" in done.stderr
    result = await client.check(["csv-drainer.example", "https://csv-drainer.example/a,b"])
    for r in result.results:
        [match] = r.matches
        assert match.title == "Drainer kit"
        assert (match.category, match.severity) == (
            alert_pb2.CATEGORY_SCAM,
            alert_pb2.SEVERITY_CRITICAL,
        )
        assert match.confidence == 90
    [rug] = (await client.check(["csv-rug.example"])).results[0].matches
    assert (rug.category, rug.severity, rug.title) == (
        alert_pb2.CATEGORY_RUG_PULL,
        alert_pb2.SEVERITY_LOW,
        "From the CSV",
    )
    stored = await client.get(rug.alert_id)
    assert stored.alert.tlp == alert_pb2.TLP_GREEN


def test_bad_inputs_and_an_unreachable_node_exit_2(node: NodeProcess, tmp_path: Path) -> None:
    missing = import_(node, str(tmp_path / "nope.txt"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps({"type": "bundle", "id": "bundle--1", "objects": []}))
    stix = import_(node, str(bundle))
    assert stix.returncode == 0 and "imported 0 of 0 values (stix)" in stix.stdout
    headerless = tmp_path / "x.csv"
    headerless.write_text("a,b\n1,2\n")
    assert import_(node, str(headerless), "--format", "csv").returncode == 2
    down = subprocess.run(
        [sys.executable, "-m", "node.cli", "import", "--node", "127.0.0.1:9", "-"],
        input="evil.example\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert down.returncode == 2 and "cannot reach" in down.stderr
    assert "Traceback" not in down.stderr


async def test_publish_batch_answers_each_item_and_a_bad_one_fails_no_other(
    client: AlertClient,
) -> None:
    def item(value: str, request_id: str = "") -> api.PublishRequest:
        return api.PublishRequest(
            category=alert_pb2.CATEGORY_PHISHING,
            title=f"batch {value}",
            indicators=[alert_pb2.Indicator(type=DOMAIN, value=value)],
            client_request_id=request_id,
        )

    response = await client.publish_batch(
        [
            item("batch-one.example", "b-1"),
            item("localhost"),
            item("batch-two.example"),
            item("batch-one.example", "b-1"),  # the same request twice in one batch
        ]
    )
    one, bad, two, again = response.results
    assert one.id and two.id and not one.error and not two.error
    assert not bad.id and bad.code == 3 and "at least two labels" in bad.error  # INVALID_ARGUMENT
    assert again.id == one.id and again.duplicate
    # A retry, by Publish or PublishBatch, finds the first alert.
    retried, single = await asyncio.gather(
        client.publish_batch([item("batch-one.example", "b-1")]),
        client.publish(item("batch-one.example", "b-1")),
    )
    assert retried.results[0].id == one.id and retried.results[0].duplicate
    assert single.id == one.id and single.duplicate
    stored = [await client.get(r.id) for r in (one, two)]
    assert stored[1].alert.seq == stored[0].alert.seq + 1  # chained in order
    assert stored[1].alert.prev == one.id


def test_sniffing_and_planning_without_a_node() -> None:
    assert lists.sniff('{"type": "bundle", "objects": []}') == "stix"
    assert lists.sniff('{"Event": {"Attribute": []}}') == "misp"
    assert lists.sniff("value,type\nevil.example,domain\n") == "csv"
    assert lists.sniff("https://evil.example/a,b\n") == "list"  # a comma, but no header
    assert lists.sniff("# comment\nevil.example\n") == "list"
    found = [ImportedIndicator(f"p{i}.example", None, f"line {i}") for i in range(60)]
    found.append(ImportedIndicator("P1.EXAMPLE.", None, "line 99"))  # the same value again
    work = plan([ImportedAlert(indicators=found)], Defaults(per_alert=25, source="x.txt"))
    assert [len(r.indicators) for r in work.requests] == [25, 25, 10]
    assert [r.title for r in work.requests] == [f"Imported from x.txt ({i}/3)" for i in (1, 2, 3)]
    assert work.wheres[2] == "line 50 to line 59"
    again = plan([ImportedAlert(indicators=found)], Defaults(per_alert=25, source="x.txt"))
    assert [r.client_request_id for r in again.requests] == [
        r.client_request_id for r in work.requests
    ]
    assert len({r.client_request_id for r in work.requests}) == 3


def test_published_host_names_are_found_by_the_spellings_a_browser_uses(node: NodeProcess) -> None:
    alertmesh(
        "publish", "--node", node.address, "--category", "phishing", "--title", "spellings",
        "--indicator", "ether_promo.kissr.com", "--indicator", "FAß.example.",
    )  # fmt: skip
    assert flagged(
        node,
        "ETHER_PROMO.kissr.com.",
        "https://ether_promo.kissr.com/claim",
        "faß.example",
        "https://www.xn--fa-hia.example/",
        "bob@FAß.example",
    ) == dict.fromkeys(
        [
            "ETHER_PROMO.kissr.com.",
            "https://ether_promo.kissr.com/claim",
            "faß.example",
            "https://www.xn--fa-hia.example/",
            "bob@FAß.example",
        ],
        True,
    )
    assert flagged(node, "fass.example") == {"fass.example": False}
