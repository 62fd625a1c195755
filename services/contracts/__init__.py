"""The event contract: Avro schemas' models, deterministic ids, the codec, the topic catalog.

Import from here: ``from services.contracts import PostLiked, DomainEvent, make_codec``.
"""

from services.contracts import models
from services.contracts.codec import Codec, DecodeError, make_codec
from services.contracts.ids import command_id, event_id
from services.contracts.models import *  # noqa: F403  (everything models.__all__ names)

__all__ = ["Codec", "DecodeError", "command_id", "event_id", "make_codec"]
__all__ += models.__all__
