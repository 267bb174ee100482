"""Agents and streams: the user-facing processing API."""

from grey.agents.agent import Agent
from grey.agents.event import Batch, Event
from grey.agents.spec import AgentSpec
from grey.agents.stream import Stream
from grey.agents.testing import TestContext

__all__ = ["Agent", "AgentSpec", "Batch", "Event", "Stream", "TestContext"]
