"""Fixed-shape batches of dataset samples, loaded ahead in a background thread.

``batches(dataset, ...)`` drives any map-style dataset with ``len``, ``dataset[i]``,
``categories``, ``on_error`` and a ``skip(path, err)`` hook (``FluoroSegDataset``): samples are
padded to ``max_objects`` with ``categories="full"``, stacked by ``collate``, and handed over
through a bounded queue; an error in the loader thread is re-raised in the caller's.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from fluorojax import _validate
from fluorojax.fluoroseg.index import UnsafePathError

if TYPE_CHECKING:  # the reader imports this module
    from fluorojax.fluoroseg.reader import FluoroSegDataset

_PADDED_KEYS = ("masks", "labels", "valid", "travel", "has_travel", "bboxes")


def pad_objects(sample: dict, max_objects: int) -> dict:
    """``sample`` with its object axis padded to ``max_objects`` (valid False, label 0)."""
    n = len(sample["labels"])
    if n > max_objects:
        raise ValueError(f"{sample['file_name']}: {n} objects exceed max_objects={max_objects}")
    pad = max_objects - n
    out = dict(sample)
    for key in _PADDED_KEYS:
        out[key] = np.pad(sample[key], [(0, pad)] + [(0, 0)] * (sample[key].ndim - 1))
    out["descriptions"] = sample["descriptions"] + [[] for _ in range(pad)]
    return out


def collate(samples: list[dict]) -> dict[str, Any]:
    """Stack the arrays of ``samples`` along a new first axis; other values become lists."""
    batch = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        batch[key] = np.stack(values) if isinstance(values[0], np.ndarray) else values
    return batch


def _stream(dataset, order, batch_size, drop_last, max_objects, stop: threading.Event):
    samples: list[dict[str, Any]] = []
    for index in order:
        if stop.is_set():
            return
        try:
            sample = dataset[int(index)]
            if dataset.categories == "full":
                sample = pad_objects(sample, max_objects)
            if samples and sample["image"].shape != samples[0]["image"].shape:
                raise ValueError(
                    f"{sample['file_name']}: image size {sample['image'].shape} differs from the batch's {samples[0]['image'].shape}; pass image_size to batch images of different sizes"
                )
        except (OSError, ValueError) as err:
            if dataset.on_error == "raise" or isinstance(err, UnsafePathError):
                raise
            dataset.skip(dataset.file_name(int(index)), err)
            continue
        samples.append(sample)
        if len(samples) == batch_size:
            yield collate(samples)
            samples = []
    if samples and not drop_last:
        yield collate(samples)


def batches(
    dataset: FluoroSegDataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool = True,
    max_objects: int | None = None,
    prefetch: int = 2,
) -> Iterator[dict[str, Any]]:
    """Iterate over fixed-shape batches, loading ahead in a background thread.

    Args:
      dataset: the ``FluoroSegDataset`` (``dataset.batches(...)`` passes itself).
      batch_size: samples per batch.
      shuffle, seed: visit samples in ``np.random.default_rng(seed).permutation`` order.
      drop_last: leave out a last, smaller batch (so every batch has the same shape).
      max_objects: with ``categories="full"`` (required there), pad every sample to this many
        objects (``valid`` False, label 0); a sample with more raises (or is skipped).
      prefetch: batches loaded ahead by the thread; 0 loads in the caller's thread.
    Yields:
      dicts with the sample keys stacked: ``image`` (B, H, W), ``masks`` (B, C, H, W),
      ``labels``, ``valid``, ``has_travel`` (B, C), ``travel`` (B, C, H, W), ``bboxes``
      (B, C, 4), ``original_size`` (B, 2); ``descriptions``, ``camera``, ``image_info``,
      ``file_name`` as lists of length B.
    """
    batch_size = _validate.positive_int("batch_size", batch_size)
    if dataset.categories == "full":
        if max_objects is None:
            raise ValueError(
                "categories='full' needs max_objects (a positive int) to pad objects to a fixed count, got None"
            )
        max_objects = _validate.positive_int("max_objects", max_objects)
    prefetch = _validate.integer("prefetch", prefetch, minimum=0)
    seed = _validate.integer("seed", seed, minimum=0)
    shuffle, drop_last = _validate.boolean("shuffle", shuffle), _validate.boolean("drop_last", drop_last)
    order = np.random.default_rng(seed).permutation(len(dataset)) if shuffle else np.arange(len(dataset))
    stop = threading.Event()
    if prefetch == 0:
        yield from _stream(dataset, order, batch_size, drop_last, max_objects, stop)
        return
    slots: queue.Queue = queue.Queue(maxsize=prefetch)
    done = object()

    def put(item) -> None:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            for batch in _stream(dataset, order, batch_size, drop_last, max_objects, stop):
                put(batch)
        except BaseException as err:  # handed to the consumer, which re-raises it
            put(err)
        else:
            put(done)

    thread = threading.Thread(target=produce, name="FluoroSegDataset.batches", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
