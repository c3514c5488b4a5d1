"""The project's own exception types.

Each carries a message a person can act on. The RPC layer maps every one of them
to a gRPC status code in one place (node/rpc/errors.py).
"""

from __future__ import annotations


class AlertmeshError(Exception):
    """Base class of every error alertmesh raises on purpose."""


class InvalidAlert(AlertmeshError):
    """The alert is malformed or breaks a protocol rule (INVALID_ARGUMENT)."""


class InvalidIndicator(InvalidAlert):
    """An indicator cannot be understood or is invalid for its type or chain."""


class InvalidSignature(AlertmeshError):
    """The signature is missing or does not verify over the exact body bytes."""


class UnknownOrigin(AlertmeshError):
    """The alert's origin (or a peer) is not a member on the roster (PERMISSION_DENIED)."""


class LimitExceeded(AlertmeshError):
    """A protocol limit is exceeded: size, count or rate (RESOURCE_EXHAUSTED)."""


class NotFound(AlertmeshError):
    """The thing asked for is not held here (NOT_FOUND)."""


class ConfigError(AlertmeshError):
    """The node's configuration, identity or roster files are wrong."""


class Unauthenticated(AlertmeshError):
    """A client API call without a valid token, or with a revoked one (UNAUTHENTICATED)."""


class Forbidden(AlertmeshError):
    """A valid token whose scope does not cover the method called (PERMISSION_DENIED)."""


class InvalidCard(AlertmeshError):
    """A member card cannot be read, breaks a rule, or its signature does not verify."""


class KeyNotValid(UnknownOrigin):
    """The key is a member's, but retired, compromised or not yet valid for this alert
    or session (PERMISSION_DENIED, like an unknown origin)."""


class ReadOnly(AlertmeshError):
    """A write asked of a read-only API process (alertmesh serve-api)."""


class StoreClosed(AlertmeshError):
    """A write asked of a store that is closing or closed: the node is stopping
    (UNAVAILABLE)."""
