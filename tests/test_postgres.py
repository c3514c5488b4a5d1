"""The PostgreSQL store as operators run it: a node writing to it survives SIGKILL
without losing an acknowledged alert, `store migrate` copies a SQLite store
verifiably, read-only API processes (serve-api) serve what the node stores, and the
database password never shows. The store contract itself is tests/test_store.py,
which runs against PostgreSQL too. The server comes from tests/pg.py."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import asyncpg
import grpc
import pytest

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.core import indicators
from node.core.errors import ConfigError
from node.rpc.client import AlertClient
from node.store import PutOutcome, Query, SqliteStore
from node.store.postgres import PostgresStore
from node.store.postgres_url import redacted
from tests.factory import DOMAIN, Author, now_ms
from tests.pg import PgServer
from tests.procs import NodeProcess, alertmesh
from tests.test_durability import publish_until_stopped

PASSWORD = "s3cret-Pa55word"  # a made-up one, for the masking checks


def use_store(home: Path, url: str) -> None:
    """Point the home's [store] url at `url` (again, if it was set before)."""
    config = home / "config.toml"
    text = re.sub(r'\nurl = "[^"\n]*"\n', '\nurl = ""\n', config.read_text(), count=1)
    assert '\nurl = ""\n' in text
    config.write_text(text.replace('\nurl = ""\n', f'\nurl = "{url}"\n'))


def keys(text: str) -> frozenset[str]:
    return frozenset(indicators.lookup_keys(indicators.parse(text, strict=False)))


def test_the_password_of_a_store_url_is_masked() -> None:
    url = f"postgresql://alertmesh:{PASSWORD}@db.internal:5432/alerts?sslmode=require"
    assert redacted(url) == "postgresql://alertmesh:***@db.internal:5432/alerts?sslmode=require"
    assert redacted("postgresql://alertmesh@/alerts?host=/run/pg") == (
        "postgresql://alertmesh@/alerts?host=/run/pg"
    )
    in_query = f"postgresql://alertmesh@db.internal/alerts?sslmode=require&password={PASSWORD}"
    assert PASSWORD not in redacted(in_query) and "password=***" in redacted(in_query)
    assert PASSWORD not in redacted(f"postgresql://alertmesh:{PASSWORD}@[::1/alerts")


def test_a_node_whose_database_is_unreachable_says_so_in_one_line_without_the_password(
    tmp_path: Path, free_port: int
) -> None:
    alertmesh("init", "--home", str(tmp_path), "--name", "pg")
    for url in (
        f"postgresql://alertmesh:{PASSWORD}@127.0.0.1:{free_port}/alerts",
        f"postgresql://alertmesh@127.0.0.1:{free_port}/alerts?password={PASSWORD}",
    ):
        use_store(tmp_path, url)
        _refused_without_the_password(tmp_path)


def _refused_without_the_password(tmp_path: Path) -> None:
    for command in (["run", "--listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0"],
                    ["serve-api", "--listen", "127.0.0.1:0"]):  # fmt: skip
        done = alertmesh(*command, "--home", str(tmp_path), check=False)
        assert done.returncode != 0
        assert PASSWORD not in done.stdout + done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and done.stderr.splitlines()[-1] == errors[0], done.stderr
        assert "cannot open the store postgresql://alertmesh" in errors[0]
        assert "***" in errors[0]
        assert "Traceback" not in done.stderr


@pytest.fixture
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens there now


async def test_one_node_writes_a_database_at_a_time(pg_server: PgServer) -> None:
    url = await pg_server.new_database()
    async with PostgresStore(url):
        with pytest.raises(ConfigError, match="another node writes the store"):
            async with PostgresStore(url):
                pass
        async with PostgresStore(url, follow=True) as reader:  # readers are welcome
            assert await reader.count() == 0


async def test_the_writer_connects_again_after_its_connection_is_cut(
    pg_server: PgServer,
) -> None:
    """A server restart or a terminated backend drops the writer's connection and its
    lock: the next put connects again, takes the lock again, and nothing is lost."""
    url = await pg_server.new_database()
    author = Author()
    async with PostgresStore(url) as store:
        assert await store.put([author.record()], now_ms=now_ms()) == [PutOutcome.ACCEPTED]
        writer = store._wdb
        assert writer is not None
        admin = await asyncpg.connect(url)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", writer.get_server_pid())
        finally:
            await admin.close()
        second = author.record()
        outcomes: list[PutOutcome] = []
        for _ in range(3):  # the batch that meets the dead connection fails; a retry works
            try:
                outcomes = await store.put([second], now_ms=now_ms())
                break
            except Exception:  # whatever the driver raises for a lost link
                await asyncio.sleep(0.1)
        assert outcomes == [PutOutcome.ACCEPTED]
        assert await store.count() == 2
        with pytest.raises(ConfigError, match="another node writes the store"):
            async with PostgresStore(url):  # the lock is held again
                pass


async def test_a_reader_follows_the_writers_commits(pg_server: PgServer) -> None:
    url = await pg_server.new_database()
    author = Author()
    records = [author.record(indicators=[(DOMAIN, f"f{i}.example")]) for i in range(3)]
    async with PostgresStore(url) as writer, PostgresStore(url, follow=True) as reader:
        changed = asyncio.Event()
        reader.on_change = changed.set
        await writer.put(records, now_ms=now_ms())
        async with asyncio.timeout(5):
            await changed.wait()  # the NOTIFY, not the poll
        assert await reader.count() == 3
        assert reader.chains.vector() == writer.chains.vector()
        found = await reader.lookup(keys("f1.example"), now_ms=now_ms())
        assert [s.record.id for hits in found.values() for s in hits] == [records[1].id]
        with pytest.raises(ConfigError, match="only reads"):
            await reader.put(records, now_ms=now_ms())


@pytest.mark.parametrize("sig", [signal.SIGKILL], ids=["SIGKILL"])
async def test_no_acknowledged_alert_is_lost_on_postgresql(
    tmp_path: Path, pg_server: PgServer, sig: int
) -> None:
    alertmesh("init", "--home", str(tmp_path), "--name", "durable-pg")
    use_store(tmp_path, await pg_server.new_database())
    node = NodeProcess(tmp_path).start()
    try:
        acked, _ = await publish_until_stopped(node, sig)
        assert len(acked) >= 200
        node.start()  # the killed node's advisory lock went with its connection
        async with AlertClient(node.address) as client:
            for alert_id in acked:
                await client.get(alert_id)  # raises NOT_FOUND if lost
            stats = await client.stats()
            [own] = stats.origins
            assert own.contiguous_seq == own.max_seq == stats.alerts >= len(acked)
            more = await client.publish(
                api.PublishRequest(category=alert_pb2.CATEGORY_SCAM, title="after restart")
            )
            assert more.alert.alert.seq == own.max_seq + 1
    finally:
        node.kill()


async def test_store_migrate_copies_a_sqlite_store_verified_by_digests(
    tmp_path: Path, pg_server: PgServer
) -> None:
    a, b = Author(), Author()
    records = [a.record(indicators=[(DOMAIN, f"m{i}.example")]) for i in range(12)]
    records += [b.record() for _ in range(5)]
    b.seq, b.head = 2, records[13].id
    second = b.record(title="another third")  # b equivocates on seq 3
    async with SqliteStore(tmp_path / "alerts.db") as old:
        await old.put(records[:1], now_ms=1_000, request_id="publish-1")
        await old.put(records[1:], now_ms=2_000)
        assert await old.put([second], now_ms=3_000) == [PutOutcome.EQUIVOCATION]
        last = (await old.search(Query(now_ms=now_ms()), limit=1))[0].local_seq
    url = await pg_server.new_database()
    done = alertmesh("store", "migrate", "--from", str(tmp_path / "alerts.db"), "--to", url)
    source, target, verdict = done.stdout.strip().splitlines()[-3:]
    digests = [re.search(r"digest ([0-9a-f]{64})", line) for line in (source, target)]
    assert digests[0] and digests[1] and digests[0][1] == digests[1][1]
    assert "17 alerts, 1 equivocations" in source and "17 alerts, 1 equivocations" in target
    assert verdict == "verified: equal digests and counts"
    async with PostgresStore(url) as new:
        assert await new.last_cursor() == last == 17  # positions kept
        for r in records:
            got = await new.get(r.id)
            assert got is not None and got.record == r
        first = await new.get(records[0].id)
        assert first is not None and first.received_at_ms == 1_000
        assert await new.request("publish-1") == records[0].id
        [proof] = await new.equivocations()
        assert (proof.first.id, proof.second.id) == (records[14].id, second.id)
        found = await new.lookup(keys("m7.example"), now_ms=now_ms())
        assert [s.record.id for hits in found.values() for s in hits] == [records[7].id]
    again = alertmesh(
        "store", "migrate", "--from", str(tmp_path / "alerts.db"), "--to", url, check=False
    )
    assert again.returncode == 2 and "already holds 17 alerts" in again.stderr


@pytest.mark.cluster
async def test_read_only_api_processes_serve_what_the_node_stores(
    tmp_path: Path, pg_server: PgServer
) -> None:
    """One node writes; two serve-api processes over the same database find an alert
    ingested into the node (get and check), a watch stream in one sees it within a
    second, and writes sent to them are refused, pointing at the node."""
    other = Author()  # another member, whose alerts reach this node
    home = tmp_path / "member"
    url = await pg_server.new_database()
    alertmesh("init", "--home", str(home), "--name", "member")
    use_store(home, url)
    node = new_node_with_store(home, {"other": other.key})
    readers = [NodeProcess(home, command="serve-api") for _ in range(2)]
    try:
        for reader in readers:
            reader.start()
        async with (
            AlertClient(node.address) as writer,
            AlertClient(readers[0].address) as first,
            AlertClient(readers[1].address) as second,
        ):
            watch = first.subscribe(api.SubscribeRequest())
            seen: asyncio.Queue[api.SubscribeEvent] = asyncio.Queue()

            async def follow() -> None:
                async for event in watch:
                    await seen.put(event)

            watcher = asyncio.create_task(follow())
            await asyncio.sleep(0.5)  # the stream is open before the alert is stored
            signed = other.next(indicators=[(DOMAIN, "drainer.example")])
            response = await writer.ingest([signed])
            assert response.results[0].outcome == api.INGEST_OUTCOME_ACCEPTED
            alert_id = response.results[0].id
            async with asyncio.timeout(1.0 + 1.0):  # within a second, with slack for CI
                event = await seen.get()
            assert event.alert.id == alert_id
            for client in (first, second):
                got = await client.get(alert_id)
                assert got.alert.title == signed_title(signed)
                result = (await client.check(["https://login.drainer.example/x"])).results[0]
                assert [m.alert_id for m in result.matches] == [alert_id]
                stats = await client.stats()
                assert stats.alerts == 1
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await first.publish(api.PublishRequest(category=1, title="not here"))
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "read-only API process" in (refused.value.details() or "")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await second.ingest([other.next()])
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            watcher.cancel()
    finally:
        for process in (*readers, node):
            process.kill()


def new_node_with_store(home: Path, members: dict[str, bytes]) -> NodeProcess:
    from node.core.roster import Member, Roster

    roster = Roster.from_toml((home / "roster.toml").read_text())
    extra = [Member(n, key) for n, key in members.items()]
    (home / "roster.toml").write_text(Roster.of([*roster, *extra]).to_toml())
    return NodeProcess(home).start()


def signed_title(signed: alert_pb2.SignedAlert) -> str:
    return alert_pb2.Alert.FromString(signed.body).title


def test_a_store_url_that_is_not_postgresql_is_a_config_error(tmp_path: Path) -> None:
    alertmesh("init", "--home", str(tmp_path), "--name", "pg")
    use_store(tmp_path, "mysql://root@localhost/alerts")
    done = alertmesh("run", "--home", str(tmp_path), check=False)
    assert done.returncode == 2
    assert 'store.url must be "postgresql://..."' in done.stderr.strip().splitlines()[-1]
