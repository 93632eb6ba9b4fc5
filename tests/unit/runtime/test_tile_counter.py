"""The host side of a persistent kernel's tile counter: a stream keeps one counter for the kernels that
leave it zero, made outside CUDA graph capture (runtime/tile_counter.py)."""

from qimeng_serve.runtime.tile_counter import StreamCounters


def maker(made):
    def make():
        made.append(object())
        return made[-1]
    return make


def test_a_stream_keeps_one_counter_and_other_streams_their_own():
    counters, made = StreamCounters(), []
    first = counters.get(("cuda:0", 7), False, maker(made))
    assert counters.get(("cuda:0", 7), False, maker(made)) is first and len(made) == 1
    other_stream = counters.get(("cuda:0", 8), False, maker(made))
    other_device = counters.get(("cuda:1", 7), False, maker(made))
    assert len({id(first), id(other_stream), id(other_device)}) == 3 and len(made) == 3


def test_a_counter_made_inside_a_capture_serves_that_launch_only():
    """Made in a capture, it is zeroed only when the graph replays: an eager launch on the stream must
    not take it, and the next capture gets a fresh one too."""
    counters, made = StreamCounters(), []
    captured = counters.get(("cuda:0", 7), True, maker(made))
    again = counters.get(("cuda:0", 7), True, maker(made))
    eager = counters.get(("cuda:0", 7), False, maker(made))
    assert len({id(captured), id(again), id(eager)}) == 3
    # once the stream has an eager counter, a capture on it uses that one (every launch leaves it zero)
    assert counters.get(("cuda:0", 7), True, maker(made)) is eager and len(made) == 3
