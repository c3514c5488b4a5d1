"""Client request ids of the publishes in flight, and what a retry of one gets.

A client that retries a Publish with the same request id must get the first call's
alert, not a second one. While the first call runs, its request id maps to a future of
the alert's id; once that alert is signed, the node's commit task (node/app/commits.py),
not the caller, settles the future and removes the request, so a retry gets its answer
even if the first caller has gone. A first call that leaves before signing cancels the
future: a retry waiting on it then asks the store and, if it holds nothing for the id,
publishes itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from node.core.errors import AlertmeshError, StoreClosed
from node.store.base import wrote_nothing


@dataclass(frozen=True, slots=True)
class BatchItemResult:
    """One item of publish_batch: the alert's id (the first one's for a retried request),
    or the error that refused the item."""

    id: bytes = b""
    duplicate: bool = False
    error: AlertmeshError | None = None


def unstored_error(failure: BaseException, request_id: str) -> AlertmeshError:
    """What a publish (or a batch item) whose put failed answers: the store's own error as
    it is, any other (a full disk, a lost connection; logged) as UNAVAILABLE, saying
    whether the alert may have been stored after all, and how to send it again safely
    (`request_id`: the client's request id, if it sent one)."""
    if isinstance(failure, AlertmeshError):
        return failure
    if wrote_nothing(failure):
        return StoreClosed(
            "the node could not store this alert (its store failed; the node's log has "
            "details); send it again"
        )
    if request_id:
        return StoreClosed(
            "the node's store failed while committing this alert and cannot tell whether "
            "it was stored (the node's log has details); send it again with the same "
            "client_request_id, which never publishes it twice"
        )
    return StoreClosed(
        "the node's store failed while committing this alert and cannot tell whether it "
        "was stored (the node's log has details); look for it (Get, Search by its "
        "values) before sending it again: sent without a client_request_id, it could be "
        "published twice"
    )


@dataclass(slots=True)
class Claim:
    """A call that answers its request id: `handed` once its commit task holds `answer`."""

    answer: asyncio.Future[bytes]
    handed: bool = False


class PublishRequests:
    def __init__(self) -> None:
        self.pending: dict[str, asyncio.Future[bytes]] = {}

    async def first_answer(self, request_id: str) -> bytes | None:
        """The alert id of the call in flight with this request id, once it is committed;
        None if no call is in flight (or the first left before signing)."""
        while (pending := self.pending.get(request_id)) is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this caller was cancelled
                # The first call left before its alert was signed (or at shutdown): this
                # one asks the store and, if it holds nothing for the id, publishes.
        return None

    @contextlib.contextmanager
    def claim(self, request_id: str) -> Iterator[Claim]:
        """This call answers `request_id` until it hands `answer` to its commit task
        (sets `handed`); if it ends before, a retry waiting on it learns why."""
        claim = Claim(asyncio.get_running_loop().create_future())
        self.pending[request_id] = claim.answer
        try:
            yield claim
        except BaseException as exc:
            if not claim.handed:  # cancelled: a retry waiting on it publishes itself
                self.answer(claim.answer, exc)
            raise
        finally:
            if not claim.handed:
                del self.pending[request_id]

    def open(self, request_id: str) -> asyncio.Future[bytes]:
        """A batch item answers `request_id` (released by `release` unless handed)."""
        answer = self.pending[request_id] = asyncio.get_running_loop().create_future()
        return answer

    def release(self, mine: dict[str, asyncio.Future[bytes]]) -> None:
        """The batch's requests no commit task holds: a retry waiting on one publishes."""
        for request_id, answer in mine.items():
            if not answer.done():
                answer.cancel()
            del self.pending[request_id]

    @staticmethod
    def answer(answer: asyncio.Future[bytes] | None, outcome: bytes | BaseException) -> None:
        """The put for `answer`'s request ended: committed (the alert id) or failed."""
        if answer is None or answer.done():
            return
        if isinstance(outcome, bytes):
            answer.set_result(outcome)  # a retry of the request gets this id
        elif isinstance(outcome, asyncio.CancelledError):
            answer.cancel()  # a retry asks the store again
        else:
            answer.set_exception(outcome)  # a retry publishes anew
            answer.exception()  # a retry may never look at it

    def settle(self, answers: dict[str, asyncio.Future[bytes]], task: asyncio.Task[Any]) -> None:
        """A commit task ended: the answers to its request ids its put did not give (it
        failed, or was cancelled at shutdown) get its failure; then retries look in the
        store again."""
        failure = None if task.cancelled() else task.exception()
        for request_id, answer in answers.items():
            self.answer(answer, asyncio.CancelledError() if failure is None else failure)
            if self.pending.get(request_id) is answer:
                del self.pending[request_id]

    @staticmethod
    async def retried(pending: asyncio.Future[bytes]) -> BatchItemResult:
        """A batch item retrying a request in flight: the first call's answer."""
        try:
            return BatchItemResult(await asyncio.shield(pending), duplicate=True)
        except AlertmeshError as exc:
            return BatchItemResult(error=exc)
        except Exception:  # the first call's put failed (a full disk): this item only
            return BatchItemResult(
                error=StoreClosed(
                    "the first call with this request id could not store its alert; send it again"
                )
            )
        except asyncio.CancelledError:
            if not pending.cancelled():
                raise  # this caller was cancelled
            # The first call left before its alert was signed (or at shutdown).
            return BatchItemResult(
                error=StoreClosed(
                    "the first call with this request id ended before its alert "
                    "was stored; send it again"
                )
            )
