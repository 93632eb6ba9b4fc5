"""The counter a persistent sm90a kernel claims its tiles from (scheduler.cuh TileCounter).

Kernels built now (`"abi": "attn_params+tma_descs+tile_counter+retire"`) leave their counter zero when
they end, so one counter serves every launch on a stream and is zeroed once, when it is made: no fill
kernel runs ahead of each launch. Kernels of earlier builds (`...+tile_counter`) get a counter zeroed on
the stream for each launch, as before."""

from __future__ import annotations

from collections.abc import Callable, Hashable

COUNTER_INTS = 2  # the claims, then the CTAs whose claims are over (TileCounter::retire)


class StreamCounters:
    """One retiring counter per key (a device and stream), made by `make` the first time the stream
    launches outside CUDA graph capture.

    A launch being captured on a stream that has no counter yet gets one of its own instead, not kept:
    made inside the capture, it is zeroed only when the graph replays, so an eager launch on the stream
    before the first replay would read whatever the memory held. A counter made eagerly may be captured:
    every launch, eager or replayed, leaves it zero for the next one in stream order. (Two streams must
    not run one stream's counter at once: a graph captured on stream A and replayed on B while A runs
    our kernels eagerly would share A's counter. Replaying on the capture stream, as vLLM does, cannot.)"""

    def __init__(self) -> None:
        self._held: dict[Hashable, object] = {}

    def held(self, key: Hashable):
        """The stream's counter, or None before its first launch outside a capture."""
        return self._held.get(key)

    def get(self, key: Hashable, capturing: bool, make: Callable[[], object]):
        counter = self._held.get(key)
        if counter is None:
            counter = make()
            if not capturing:
                self._held[key] = counter
        return counter


def zeroed_tile_counter(stream, ints: int = COUNTER_INTS):
    """A counter zeroed on the launch's (torch) stream. The tensor must stay alive until the launch is
    enqueued; the caching allocator orders its reuse on that stream. Two ints even for a kernel of an
    earlier build, which reads one: then a retiring kernel given a per-launch counter stays in bounds."""
    import torch

    with torch.cuda.stream(stream):
        return torch.zeros(ints, dtype=torch.int32, device=stream.device)


_COUNTERS = StreamCounters()


def retiring_counter(stream):
    """The counter of `stream` (a torch stream) for a kernel that leaves it zero. Every launch after the
    stream's first asks only the dict; whether the stream is being captured matters only before that."""
    import torch

    key = (stream.device, stream.cuda_stream)
    counter = _COUNTERS.held(key)
    if counter is not None:
        return counter
    with torch.cuda.stream(stream):
        capturing = torch.cuda.is_current_stream_capturing()
    return _COUNTERS.get(key, capturing, lambda: zeroed_tile_counter(stream))
