"""Clients of the social networks' APIs (VK, OK), used by the collector.

The collector drives one ``collect_group`` per group and reads ``counters`` and
``skips``; everything else here is how to get there politely and exactly.
"""

from services.collector.api.call_counters import CountersSnapshot
from services.collector.api.config import OkClientSettings, RetrySettings, VkClientSettings
from services.collector.api.errors import (
    ApiError,
    InconsistentReadError,
    ObjectSkippedError,
    RetriesExhaustedError,
    RunAbortedError,
)
from services.collector.api.ok import OkClient
from services.collector.api.ratelimit import SlidingWindowLimiter
from services.collector.api.records import (
    CollectedItem,
    Comment,
    GroupMembers,
    Post,
    PostFacets,
    Skip,
    Window,
)
from services.collector.api.vk import VkClient

__all__ = [
    "ApiError",
    "CollectedItem",
    "Comment",
    "CountersSnapshot",
    "GroupMembers",
    "InconsistentReadError",
    "ObjectSkippedError",
    "OkClient",
    "OkClientSettings",
    "Post",
    "PostFacets",
    "RetriesExhaustedError",
    "RetrySettings",
    "RunAbortedError",
    "Skip",
    "SlidingWindowLimiter",
    "VkClient",
    "VkClientSettings",
    "Window",
]
