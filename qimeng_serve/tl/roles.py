"""The interpreter's meaning of warp specialisation (docs/tl.md "Hopper"): `Role`, `Wait`, `Release`.

The roles of a CTA run side by side, as the producer and consumer warpgroups do on the GPU. Each
shared buffer the producer copies into is a ring of `stages=` slots with, per slot, the two
barriers the hardware has: *full* (the copy landed) and *empty* (the consumer released it).
- producer `Copy sK <- K[...]`: waits until the next slot is empty, fills it, marks it full;
- consumer `Wait sK`: waits until its next slot is full; from then on `sK` reads that slot;
- consumer `Release sK`: the slot is empty again and `sK` can no longer be read.

Roles are coroutines stepped round-robin, each until it blocks, so a program whose barriers are
wrong fails here exactly as it would hang or race on the GPU: a read before its Wait, a Wait after
the producer stopped (deadlock), or tiles the producer filled that the consumer never took.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from qimeng_serve.errors import TLRuntimeError
from qimeng_serve.tl import ast
from qimeng_serve.tl.values import Tile

_BLOCKED = object()


@dataclass
class Ring:
    """One produced shared buffer: `stages` slots, each None (empty) or the tile that landed."""

    name: str
    template: object  # the interpreter's Buffer as Allocated (dtype, shape)
    stages: int
    slots: list = field(default_factory=list)
    filled: int = 0  # copies the producer issued
    taken: int = 0  # slots the consumer released
    waited: int = 0  # Waits the consumer passed
    bound: int | None = None  # the slot `Wait` bound and no Release has ended yet

    def __post_init__(self) -> None:
        self.slots = [None] * self.stages


class _Scheduler:
    def __init__(self) -> None:
        self.progress = 0


def run_roles(cta, roles: list[ast.Role]) -> None:
    """Run the consecutive Role statements of one CTA together (cta: the interpreter's _CTA)."""
    from qimeng_serve.tl.interpreter import _CTA

    class _RoleCTA(_CTA):
        """One role: its own names and register buffers, the CTA's shared buffers and rings."""

        def __init__(self, role: ast.Role, rings: dict[str, Ring], sched: _Scheduler) -> None:
            super().__init__(cta.m, cta.names, f"{cta.where}, role {role.role}", cta.source_name)
            self.buffers = dict(cta.buffers)
            self.alloc_options = dict(cta.alloc_options)
            self.role, self.rings, self.sched = role, rings, sched
            self.blocked_on = None
            for name in rings:
                if role.role == "consumer":
                    self.buffers.pop(name, None)  # readable only between Wait and Release

        # ---- stepping
        def steps(self, stmts):
            for s in stmts:
                if isinstance(s, ast.Comment):
                    continue
                self.stmt = s
                if isinstance(s, ast.Loop):
                    yield from self._loop_steps(s)
                elif isinstance(s, ast.Wait):
                    for name in s.buffers:
                        yield from self._wait(s, name)
                elif isinstance(s, ast.Release):
                    for name in s.buffers:
                        self._release(s, name)
                elif isinstance(s, ast.Copy) and isinstance(s.dst, ast.Name) and s.dst.id in self.rings \
                        and self.role.role == "producer":
                    yield from self._fill(s, self.rings[s.dst.id])
                elif isinstance(s, ast.Role):
                    raise self.error("a Role inside a Role", "write the roles at the kernel's top level", s)
                else:
                    self.run([s])
                self.sched.progress += 1

        def _loop_steps(self, s: ast.Loop):
            lo, hi = self.eval_int(s.start), self.eval_int(s.stop)
            saved = self.names.get(s.var)
            steps = range(lo, hi)
            for n in reversed(steps) if ast.option(s.options, "order") == "reverse" else steps:
                self.names[s.var] = n
                yield from self.steps(s.body)
            self.stmt = s
            if saved is None:
                self.names.pop(s.var, None)
            else:
                self.names[s.var] = saved

        # ---- the barrier protocol
        def _fill(self, s: ast.Copy, ring: Ring):
            slot = ring.filled % ring.stages
            while ring.slots[slot] is not None:  # the empty barrier: the consumer still holds the slot
                self.blocked_on = f"`{_text(s)}` waits for stage {slot} of {ring.name} to be released"
                yield _BLOCKED
            self.blocked_on = None
            staging = _fresh(ring.template)
            self.buffers[ring.name] = staging
            self.run([s])
            ring.slots[slot] = staging.value
            ring.filled += 1

        def _wait(self, s: ast.Wait, name: str):
            ring = self._ring(s, name, "Wait")
            if ring.bound is not None:
                raise self.error(f"`Wait {name}` again before `Release {name}`",
                                 f"release the stage of {name} before waiting for the next one", s)
            slot = ring.waited % ring.stages
            while ring.waited >= ring.filled:  # the full barrier: the producer's copy has not landed
                self.blocked_on = f"`Wait {name}` waits for stage {slot} of {name} to be filled"
                yield _BLOCKED
            self.blocked_on = None
            ring.bound, ring.waited = slot, ring.waited + 1
            view = _fresh(ring.template)
            view.value = ring.slots[slot]
            self.buffers[name] = view

        def _release(self, s: ast.Release, name: str) -> None:
            ring = self._ring(s, name, "Release")
            if ring.bound is None:
                raise self.error(f"`Release {name}` without a `Wait {name}` before it",
                                 "Release only a stage the consumer waited for", s)
            ring.slots[ring.bound] = None
            ring.bound, ring.taken = None, ring.taken + 1
            self.buffers.pop(name, None)

        def _ring(self, s, name: str, verb: str) -> Ring:
            if name not in self.rings:
                raise self.error(f"`{verb} {name}`: the producer never copies into {name}",
                                 f"{verb} only buffers the producer role fills", s)
            return self.rings[name]

        def eval(self, e):
            if isinstance(e, ast.Name) and e.id in self.rings and e.id not in self.buffers \
                    and self.role.role == "consumer":
                raise self.error(f"{e.id} is read outside `Wait {e.id}` ... `Release {e.id}`: the producer's copy "
                                 "may still be in flight or already overwritten",
                                 f"add `Wait {e.id}` before this read, and Release it after the last one", e)
            return super().eval(e)

        def buffer(self, name: str, node, what: str):
            if name in self.rings and name not in self.buffers and self.role.role == "consumer":
                raise self.error(f"{what}: {name} is used outside `Wait {name}` ... `Release {name}`",
                                 f"add `Wait {name}` before this statement", node)
            return super().buffer(name, node, what)

    rings = _rings(cta, roles)
    sched = _Scheduler()
    order = sorted(roles, key=lambda r: r.role != "producer")  # the producer issues first, as on the GPU
    scopes = [_RoleCTA(r, rings, sched) for r in order]
    running = [(scope, scope.steps(scope.role.body)) for scope in scopes]
    while running:
        before = sched.progress
        still = []
        for scope, gen in running:
            try:
                next(gen)
                still.append((scope, gen))
            except StopIteration:
                pass
        if still and len(still) == len(running) and sched.progress == before:
            waits = "; ".join(f"{s.role.role}: {s.blocked_on}" for s, _ in still)
            raise _deadlock(cta, still[0][0], waits)
        running = still
    _leftovers(cta, roles, rings)


def _rings(cta, roles: list[ast.Role]) -> dict[str, Ring]:
    """A ring per shared buffer that the producer copies into."""
    rings: dict[str, Ring] = {}
    producer = next((r for r in roles if r.role == "producer"), None)
    for s in ast.walk(producer.body if producer else ()):
        if isinstance(s, ast.Copy) and isinstance(s.dst, ast.Name) and s.dst.id in cta.buffers:
            buf = cta.buffers[s.dst.id]
            stages = _stages(cta, cta_alloc_options(cta, s.dst.id))
            rings.setdefault(s.dst.id, Ring(s.dst.id, buf, stages))
    return rings


def cta_alloc_options(cta, name: str) -> ast.Options:
    return cta.alloc_options.get(name, ())


def _stages(cta, options: ast.Options) -> int:
    v = ast.option(options, "stages")
    if v is None:
        return 1
    value = int(v) if v.isdigit() else cta.names.get(v, 1)
    return value if isinstance(value, int) and value >= 1 else 1


def _fresh(template):
    from qimeng_serve.tl.interpreter import Buffer

    nan = torch.full(template.shape, float("nan"), dtype=template.value.data.dtype)
    return Buffer(template.name, template.dtype, template.shape, Tile(nan))


def _text(s) -> str:
    from qimeng_serve.tl.printer import print_expr

    return f"Copy {print_expr(s.dst)} <- {print_expr(s.src)}"


def _deadlock(cta, scope, waits: str) -> TLRuntimeError:
    return TLRuntimeError(f"the roles wait for each other forever ({cta.where}): {waits}",
                          getattr(scope.stmt, "span", None),
                          "the consumer must take (Wait) and Release every stage the producer fills, in loops over "
                          "the same tiles", cta.source_name)


def _leftovers(cta, roles, rings: dict[str, Ring]) -> None:
    for ring in rings.values():
        if ring.filled != ring.waited:
            consumer = next((r for r in roles if r.role == "consumer"), roles[-1])
            raise TLRuntimeError(
                f"the producer filled {ring.filled} tiles of {ring.name} but the consumer waited for {ring.waited} "
                f"({cta.where})", consumer.span,
                f"loop over the same tiles in both roles, with one `Wait {ring.name}` per tile", cta.source_name)
