"""Scripts (redis-py's ``register_script``): ``script = client.register_script(lua)`` then
``script(keys=[...], args=[...])``. The core's script op sends ``EVALSHA`` and loads the script
on ``NOSCRIPT`` (on whichever node answered, in a cluster), so nothing has to be loaded first."""

from __future__ import annotations

import hashlib
from typing import Any, Optional, Sequence


class Script:
    """A Lua script bound to a client; calling it runs it (``EVALSHA``, ``SCRIPT LOAD`` on
    ``NOSCRIPT``). ``client=`` may be another client, a pipeline (queued as ``EVAL``) or an
    asyncio client (the call then returns a coroutine)."""

    def __init__(self, registered_client: Any, script: Any) -> None:
        self.registered_client = registered_client
        if isinstance(script, str):
            script = script.encode("utf-8")
        elif isinstance(script, (bytearray, memoryview)):
            script = bytes(script)
        elif not isinstance(script, bytes):
            raise TypeError("a script is str or bytes")
        self.script = script
        self.sha = hashlib.sha1(script).hexdigest()

    def __call__(
        self,
        keys: Optional[Sequence[Any]] = None,
        args: Optional[Sequence[Any]] = None,
        client: Any = None,
    ) -> Any:
        if client is None:
            client = self.registered_client
        return client._run_script(self.script, list(keys or ()), list(args or ()))

    def __repr__(self) -> str:
        return f"<vshm.Script sha={self.sha}>"
