"""The source registry: vendor kind -> Source class. One line per source."""

from __future__ import annotations

from typing import Any

from monitord.sources.avd import AvdSource
from monitord.sources.base import Source
from monitord.sources.endpoint import EndpointSource
from monitord.sources.polyv import PolyvSource
from monitord.sources.zego import ZegoSource

REGISTRY: dict[str, type[Source[Any]]] = {
    cls.kind: cls
    for cls in (
        AvdSource,
        EndpointSource,
        PolyvSource,
        ZegoSource,
    )
}
