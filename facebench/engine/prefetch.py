"""Read-ahead of uint8 image batches into reusable host buffers, and their copy to the device.

A background thread (the *producer*) reads batch k+1, k+2, ... while the caller (the *consumer*)
runs the model on batch k:

1. it takes the next buffer of a ring of ``depth`` preallocated host buffers (page-locked on CUDA),
   allocated once and reused, never reallocated;
2. it fills the buffer with the next batch from a *source*: rows of the decoded-image cache
   (:class:`CachedBatches`: read straight from the file into the buffer) or batches of a
   ``DataLoader`` over images decoded in line (:class:`LoaderBatches`);
3. it sends the buffer to the device: on CUDA a non-blocking copy on a side ``torch.cuda.Stream``,
   then ``transform`` (normalisation) on that stream, and an event recorded after each; on other
   devices a copy of the buffer (``transform`` then runs in the consumer's thread, see
   :class:`HostTransfer`);
4. it queues the result; at most ``depth`` results wait in the queue.

The consumer makes its current stream wait on the batch's event (no host synchronisation) and
calls ``record_stream`` so that the caching allocator does not reuse the batch's memory before the
consumer's queued work has read it. A host buffer is refilled only after the copy that read it has
finished (its event, waited for in the producer thread), and no batch handed to the consumer ever
shares memory with a ring buffer: a consumer may keep every batch for as long as it likes.

Batches come in source order, the last one possibly partial. An exception in the producer thread
(``KeyboardInterrupt`` included) is raised in the consumer at the batch where it happened; leaving
the ``with`` block or the loop early (``break``, an exception, ``KeyboardInterrupt``) stops the
thread and closes the source. ``depth=0`` runs the same steps in the caller's thread, with one
buffer and no read-ahead (the reference path of the tests).
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable, Iterator

import torch

from facebench.errors import ConfigError, DataError

DEFAULT_DEPTH = 3  # batches read ahead (and host buffers in the ring)
_POLL_S = 0.05  # how often a blocked producer or consumer looks whether the other side has stopped


# -- sources: where the uint8 rows come from ---------------------------------------------------------
class CachedBatches:
    """Batches of ``batch_size`` rows of a :class:`~facebench.engine.decoded.CachedImages`, read
    straight into the ring buffer (no intermediate array)."""

    def __init__(self, images, batch_size: int):
        self.images, self.batch_size = images, int(batch_size)
        self.shape = tuple(images.array.shape[1:])

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def fills(self) -> Iterator[Callable[[torch.Tensor], int]]:
        """One callable per batch: ``fill(out)`` writes the batch's rows into ``out`` and returns their count."""
        n = len(self.images)
        for start in range(0, n, self.batch_size):
            yield functools.partial(self._read, start, min(n, start + self.batch_size))

    def _read(self, start: int, stop: int, out: torch.Tensor) -> int:
        return self.images.read_into(start, stop, out.numpy())


class LoaderBatches:
    """The batches of ``loader`` (uint8 tensors of shape (B, *shape), B <= ``batch_size``), copied
    into the ring buffer. The loader's iterator (and its worker processes) lives in the producer
    thread and is shut down when the prefetcher stops."""

    def __init__(self, loader, shape: tuple[int, ...], batch_size: int):
        self.loader, self.shape, self.batch_size = loader, tuple(shape), int(batch_size)

    def __len__(self) -> int:
        return len(self.loader)

    def fills(self) -> Iterator[Callable[[torch.Tensor], int]]:
        for batch in self.loader:
            yield functools.partial(_copy_rows, batch)


def _copy_rows(batch: torch.Tensor, out: torch.Tensor) -> int:
    n = batch.shape[0]
    if n > out.shape[0] or tuple(batch.shape[1:]) != tuple(out.shape[1:]) or batch.dtype != out.dtype:
        raise DataError(f"a batch of {tuple(batch.shape)} {batch.dtype} does not fit the prefetch buffer "
                         f"{tuple(out.shape)} {out.dtype}: the source's shape or batch size is wrong")
    out[:n].copy_(batch)
    return n


# -- transfers: host buffer -> the consumer's device ----------------------------------------------------
class HostTransfer:
    """CPU (and any device without streams): the producer copies the buffer (a NumPy copy: one
    single-threaded memcpy, so that it never shares memory with the ring) and ``transform`` runs in
    the consumer's thread (torch's CPU kernels in two threads at once would compete for the same
    cores). Nothing is asynchronous: no events."""

    pinned = False

    def __init__(self, device: torch.device):
        self.device = device

    def start_thread(self) -> None:
        """Called first in the thread that sends."""

    def send(self, host: torch.Tensor, transform):
        """(batch, event after which ``host`` may be refilled, event after which the batch is ready):
        the events are None here."""
        return torch.from_numpy(host.numpy().copy()), None, None

    def receive(self, x: torch.Tensor, ready, transform) -> torch.Tensor:
        """The batch as the consumer gets it (in the consumer's thread)."""
        x = x.to(self.device)
        return x if transform is None else transform(x)

    @staticmethod
    def wait_refill(copied) -> None:
        """Block (the producer) until the copy that last read a host buffer has finished."""
        if copied is not None:
            copied.synchronize()


class CudaTransfer(HostTransfer):
    """Non-blocking copies from page-locked buffers and ``transform`` on a side stream."""

    pinned = True

    def __init__(self, device: torch.device):
        index = device.index if device.index is not None else torch.cuda.current_device()
        super().__init__(torch.device("cuda", index))
        self.stream = torch.cuda.Stream(device=self.device)

    def start_thread(self) -> None:
        torch.cuda.set_device(self.device)  # the current device is per thread

    def send(self, host: torch.Tensor, transform):
        with torch.cuda.stream(self.stream):
            x = host.to(self.device, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record(self.stream)
            if transform is not None:
                x = transform(x)
            ready = torch.cuda.Event()
            ready.record(self.stream)
        return x, copied, ready

    def receive(self, x: torch.Tensor, ready, transform) -> torch.Tensor:
        stream = torch.cuda.current_stream(self.device)
        stream.wait_event(ready)  # the device waits, not the host
        x.record_stream(stream)  # its memory is not reused before this stream's queued work has read it
        return x


def transfer_for(device: torch.device) -> HostTransfer:
    return CudaTransfer(device) if device.type == "cuda" else HostTransfer(device)


# -- the prefetcher -----------------------------------------------------------------------------------
class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


_END = object()


class Prefetcher:
    """Iterate over ``source``'s batches on ``device`` (see the module docstring).

    ``transform(uint8 batch on the device) -> tensor`` runs on the device before the batch is handed
    over (on CUDA on the side stream). Use as ``with Prefetcher(...) as batches: for x in batches``;
    iterating without ``with`` stops the thread when the loop ends or is left."""

    def __init__(self, source, device: torch.device | str, *, depth: int = DEFAULT_DEPTH, transform=None,
                 transfer: HostTransfer | None = None):
        if depth < 0:
            raise ConfigError(f"prefetch depth must be >= 0, got {depth}")
        self.source, self.depth, self.transform = source, int(depth), transform
        self.transfer = transfer or transfer_for(torch.device(device))
        shape = (source.batch_size, *source.shape)
        self.buffers = [torch.empty(shape, dtype=torch.uint8, pin_memory=self.transfer.pinned)
                        for _ in range(max(1, self.depth))]
        self._copied: list = [None] * len(self.buffers)  # per buffer: the event of the copy that last read it
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, self.depth))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fills = None  # the source's iterator while the producer runs

    def __len__(self) -> int:
        return len(self.source)

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self._thread is not None or self._stop.is_set():
            raise ConfigError("a Prefetcher is iterated once; make a new one for another pass")
        try:
            if self.depth == 0:
                yield from self._inline()
            else:
                yield from self._threaded()
        finally:
            self.close()

    def close(self) -> None:
        """Stop the producer (it finishes the batch it is reading), wait for it, close the source."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            while thread.is_alive():
                self._drain()
                thread.join(_POLL_S)
        self._drain()
        if self._fills is not None and (thread is None or not thread.is_alive()):
            self._fills.close()
            self._fills = None

    # -- the two ways of running ---------------------------------------------------------------------
    def _inline(self) -> Iterator[torch.Tensor]:
        self._fills = self.source.fills()
        self.transfer.start_thread()
        for k, fill in enumerate(self._fills):
            x, _, ready = self._produce_one(k, fill)
            yield self.transfer.receive(x, ready, self.transform)

    def _threaded(self) -> Iterator[torch.Tensor]:
        self._thread = threading.Thread(target=self._producer, name="facebench-prefetch", daemon=True)
        self._thread.start()
        while True:
            item = self._take()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            x, ready = item
            yield self.transfer.receive(x, ready, self.transform)

    def _produce_one(self, k: int, fill):
        """Fill ring buffer ``k % len(buffers)`` (once its previous copy is done) and send it."""
        slot = k % len(self.buffers)
        self.transfer.wait_refill(self._copied[slot])
        buffer = self.buffers[slot]
        n = fill(buffer)
        x, copied, ready = self.transfer.send(buffer[:n], self.transform)
        self._copied[slot] = copied
        return x, copied, ready

    def _producer(self) -> None:
        """The thread: every batch, then ``_END``; or the first exception, as a ``_Failure``."""
        try:
            self._fills = self.source.fills()
            self.transfer.start_thread()
            with torch.no_grad():
                for k, fill in enumerate(self._fills):
                    if self._stop.is_set():
                        return
                    x, _, ready = self._produce_one(k, fill)
                    if not self._put((x, ready)):
                        return
            self._put(_END)
        except BaseException as err:  # noqa: BLE001 - every error, KeyboardInterrupt too, goes to the consumer
            self._put(_Failure(err))
        finally:
            fills, self._fills = self._fills, None
            if fills is not None:
                fills.close()  # shuts a DataLoader's workers down, in the thread that iterated it

    def _put(self, item) -> bool:
        """Queue ``item`` unless the consumer has stopped; False when stopped."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _take(self):
        while True:
            try:
                return self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise DataError("the prefetch thread ended without a result (killed?); run again with prefetch: 0 "
                                    "and report it") from None

    def _drain(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
