"""asyncio vshm: ``vshm.asyncio.Client`` has the methods of :class:`vshm.Client` as coroutines."""

from .client import Client, Pipeline
from .pubsub import PubSub

__all__ = ["Client", "Pipeline", "PubSub"]
