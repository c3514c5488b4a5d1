"""The real checks on received alert bytes, with their pure part memoised.

A real node runs node/app/verify.py's `check_signed` on every alert it receives:
decode, roster membership, the protocol rules (node.core.alerts.validate), the
Ed25519 signature (node.crypto.verify_alert). At N = 1,000 a simulation receives
millions of copies of a few hundred alerts, so the part that depends only on the
bytes is computed once per distinct (body, signature) for the whole simulation:
decoding, every rule except clock skew, and the signature. The two checks that
depend on the receiver run on every copy: is the origin a key on the roster now (and
valid for the alert's seq and created_at: node.core.roster), and is
created_at within the allowed skew of the receiver's clock. The decision for each
copy is exactly `check_signed`'s; only, when an alert breaks several rules at
once, the error named may be another of them.
"""

from __future__ import annotations

from node.core import alerts
from node.core.alerts import AlertRecord
from node.core.errors import AlertmeshError, InvalidAlert, UnknownOrigin
from node.core.limits import Limits
from node.core.roster import Roster
from node.crypto import verify_alert
from node.crypto.succession import verify_succession

Checked = AlertRecord | AlertmeshError


class VerifyCache:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._memo: dict[tuple[bytes, bytes], Checked] = {}
        self.checks = 0  # copies checked
        self.verified = 0  # distinct (body, signature) pairs verified

    def check(self, body: bytes, signature: bytes, roster: Roster, now_ms: int) -> Checked:
        """What check_signed decides for this copy, at this receiver, at this time."""
        self.checks += 1
        key = (body, signature)
        verdict = self._memo.get(key)
        if verdict is None:
            verdict = self._memo[key] = self._check_bytes(body, signature)
            self.verified += 1
        if isinstance(verdict, AlertmeshError):
            return verdict
        try:
            roster.require_author(verdict.origin, verdict.seq, verdict.created_at_ms)
        except UnknownOrigin as exc:
            return exc
        if verdict.created_at_ms - now_ms > self.limits.max_clock_skew_ms:
            return InvalidAlert("created_at is too far in the future")
        return verdict

    def _check_bytes(self, body: bytes, signature: bytes) -> Checked:
        try:
            alert = alerts.decode_body(body, self.limits)
            # Clock skew is the receiver's business (above): judge the rules at creation.
            keys = alerts.validate(alert, now_ms=alert.created_at_ms, limits=self.limits)
            verify_alert(alert.origin, body, signature)
            verify_succession(alert)
            return alerts.make_record(body, signature, alert, keys)
        except AlertmeshError as exc:
            return exc
