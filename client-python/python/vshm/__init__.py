"""vshm: a Valkey/Redis client whose connections live in a shared core (in-process or the
``vshmd`` daemon), reached through shared-memory rings.

    import vshm
    r = vshm.Client.from_url("valkey://127.0.0.1:6379")       # in-process core
    r = vshm.Client.from_daemon("/run/vshm/vshmd.sock")        # through vshmd
    r.set("k", "v"); r.get("k")                                 # -> b"v"

The command methods, their return types and the exceptions follow redis-py; see docs/python.md
for the differences. ``vshm.asyncio.Client`` has the same methods as coroutines.
"""

from . import _native
from .client import Client
from .exceptions import (
    ConnectionError,
    InvalidRequest,
    PubSubError,
    RedisError,
    ResponseError,
    TimeoutError,
    VshmError,
    WatchError,
)
from .pipeline import Pipeline
from .pubsub import PubSub
from .script import Script


def _version() -> str:
    v = getattr(_native, "__version__", None)
    if v:
        return str(v)
    try:
        from importlib.metadata import version

        return version("vshm")
    except Exception:  # not installed as a distribution (e.g. a source checkout)
        return "0+unknown"


__version__ = _version()

from . import asyncio  # noqa: E402  (vshm.asyncio, after the names it imports)

__all__ = [
    "Client",
    "Pipeline",
    "PubSub",
    "Script",
    "VshmError",
    "ConnectionError",
    "TimeoutError",
    "ResponseError",
    "InvalidRequest",
    "WatchError",
    "PubSubError",
    "RedisError",
    "asyncio",
    "__version__",
]
