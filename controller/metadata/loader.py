"""Turns committed records into published images.

The loader is the single writer of "the current image" in a process. It knows nothing about
where records come from (local file, Raft, a test) nor about asyncio: callers hand it committed
records in log order, and it tells its listeners about each new image.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from odradek.controller.metadata.delta import MetadataDelta
from odradek.controller.metadata.gen import metadata_pb2 as pb
from odradek.controller.metadata.image import MetadataImage

log = logging.getLogger(__name__)

MetadataListener = Callable[[MetadataDelta, MetadataImage], None]


class MetadataListenerError(Exception):
    """A listener failed on a published image. The image is current regardless (the records
    are committed); the listener's error is the cause."""


class MetadataLoader:
    def __init__(self, image: MetadataImage = MetadataImage.EMPTY) -> None:
        self._image = image
        self._listeners: list[MetadataListener] = []

    @property
    def image(self) -> MetadataImage:
        return self._image

    def register(self, listener: MetadataListener) -> None:
        self._listeners.append(listener)

    def unregister(self, listener: MetadataListener) -> None:
        self._listeners.remove(listener)

    def handle_commit(self, records: Iterable[tuple[int, pb.MetadataRecord]]) -> MetadataImage:
        """Replay committed records and publish the resulting image.

        Records at or below the current image's offset are skipped: a log may deliver a batch
        again after a leader change or a restart, and replaying it twice would be wrong.
        The whole batch becomes one image, so listeners never see half of an operation.
        A listener error is raised as MetadataListenerError after every listener has seen the
        new image; a MetadataReplayError leaves the current image unchanged.
        """
        delta = MetadataDelta(self._image)
        replayed = 0
        for offset, record in records:
            if offset <= delta.offset:
                continue
            delta.replay(record, offset)
            replayed += 1
        if replayed == 0:
            return self._image
        image = delta.apply()
        self._image = image
        self._publish(delta, image)
        return image

    def _publish(self, delta: MetadataDelta, image: MetadataImage) -> None:
        first_error: BaseException | None = None
        for listener in list(self._listeners):
            try:
                listener(delta, image)
            except Exception as exc:
                # The image is already current; one failing listener must not keep the others
                # on a stale image.
                log.exception("metadata listener %r failed at offset %d", listener, image.offset)
                if first_error is None:
                    first_error = exc
        if first_error is not None:
            raise MetadataListenerError(
                f"a metadata listener failed at offset {image.offset}: {first_error}"
            ) from first_error
