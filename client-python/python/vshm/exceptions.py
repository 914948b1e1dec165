"""Exceptions of vshm.

The base classes are created by the native module (``vshm._native``) and re-exported here, so
``except vshm.ConnectionError`` catches what the native client raises:

* ``VshmError`` (``Exception``): the base of every vshm error.
* ``ConnectionError``: the transport is gone (vshmd killed, client closed, server unreachable).
* ``TimeoutError``: the request's deadline passed (the late reply is discarded).
* ``ResponseError``: the server answered with an error; ``.code`` is its first word
  (``"WRONGTYPE"``), ``str(e)`` the whole message.
* ``InvalidRequest``: refused before anything was sent; the message names the alternative.

Defined here (Python layer):

* ``WatchError`` (``VshmError``): a transaction was not executed because a watched key changed.
* ``PubSubError`` (``VshmError``): misuse of a :class:`vshm.pubsub.PubSub` (e.g. ``run_in_thread``
  with a subscription that has no handler).

Bad argument types raise the built-in ``TypeError``/``ValueError`` before anything is sent
(redis-py raises its ``DataError`` there).

For migration, ``RedisError`` is an alias of ``VshmError``: ``except vshm.RedisError`` catches
every vshm error. The other redis-py names (``ConnectionError``, ``TimeoutError``,
``ResponseError``, ``WatchError``) are the same here.
"""

from ._native import (
    ConnectionError,
    InvalidRequest,
    ResponseError,
    TimeoutError,
    VshmError,
)


class WatchError(VshmError):
    """A transaction was not executed: a watched key changed (EXEC returned nil)."""


class PubSubError(VshmError):
    """A PubSub object was used in a way it does not support."""


RedisError = VshmError

__all__ = [
    "VshmError",
    "ConnectionError",
    "TimeoutError",
    "ResponseError",
    "InvalidRequest",
    "WatchError",
    "PubSubError",
    "RedisError",
]
