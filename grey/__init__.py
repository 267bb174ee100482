"""grey: Faust-style stream processing over Apache Kafka.

Declare agents over topics with decorators and run them with ``grey worker -A app``.
"""

from grey.agents.agent import Agent
from grey.agents.event import Batch, Event
from grey.agents.stream import Stream
from grey.app import App
from grey.codecs import CodecError
from grey.config import ConfigError
from grey.records import Record
from grey.topics import Topic

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "App",
    "Batch",
    "CodecError",
    "ConfigError",
    "Event",
    "Record",
    "Stream",
    "Topic",
    "__version__",
]
