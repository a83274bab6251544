"""What if one more model ran: would it fit now, beside what runs, and with what settings?

`what_if` answers `reconcile fit MODEL.gguf` from the parts `plan` uses: the room on each GPU
comes from the placement (`rooms.py`), the candidate is sized by the estimator (`run_config` +
`estimate`, rounded up to MiB as the planner does), and with a desired file the verdict is its
planner's (`displacement.py`).

For each place the planner would consider (`rooms.places`) and each cache type, a binary
search (the estimator grows with the context, and with the layers on the GPU) finds the largest
context, in steps of `CTX_STEP` up to the model's trained context, with every layer on the
GPU(s); and, at the asked context, whether the model fits, fits only if lower-priority models
give way (which ones, lowest first), or fits one GPU only with part of its layers (the most:
`gpu_layers`, llama.cpp's -ngl, the output head counted). Work: about log2(trained ctx / 256)
+ log2(layers) estimates per place and cache type, memoised (a one-GPU estimate is the same on
every GPU).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from reconciler.config.desired import Desired, ModelSpec
from reconciler.estimate.facts import ModelFacts
from reconciler.estimate.memory import KV_PAD, MIB, estimate
from reconciler.plan.displacement import Displaced, Status, Verdict, planned
from reconciler.plan.options import run_config
from reconciler.plan.rooms import Holder, Room, Rooms, places, rooms
from reconciler.state import ObservedState

__all__ = [
    "CTX_STEP",
    "DEFAULT_CACHE_TYPES",
    "UNKNOWN_TRAINED_CTX",
    "AtCtx",
    "Displaced",
    "Room",
    "Row",
    "Status",
    "Verdict",
    "WhatIf",
    "what_if",
]

CTX_STEP = KV_PAD  # llama.cpp pads the context to 256 cells: the search's grain
UNKNOWN_TRAINED_CTX = 131072  # searched up to this where the GGUF does not say
DEFAULT_CACHE_TYPES = ("f16", "q8_0", "q4_0")


@dataclass(frozen=True)
class AtCtx:
    """The candidate at the asked context on one place with one cache type."""

    status: Status
    need_mib: tuple[int, ...]  # every layer on the GPU(s): per GPU of the place
    host_mib: int
    displaces: tuple[str, ...] = ()  # lower-priority models that would give way, lowest first
    gpu_layers: int | None = None  # partial: the most layers (-ngl) that fit one GPU
    partial_mib: int | None = None  # partial: what those layers need on the GPU


@dataclass(frozen=True)
class Row:
    gpus: tuple[str, ...]  # labels
    tensor_split: tuple[float, ...] | None
    cache_type: str
    max_ctx: int | None  # every layer on the GPU(s), beside what runs; None: not even CTX_STEP
    max_ctx_displacing: int | None  # the same when lower-priority models give way (if larger)
    at: AtCtx


@dataclass(frozen=True)
class WhatIf:
    candidate: ModelSpec
    facts: ModelFacts
    ctx: int  # the asked context
    cap: int  # the largest context searched (the trained context, or UNKNOWN_TRAINED_CTX)
    cache_types: tuple[str, ...]
    rooms: tuple[Room, ...]
    host_free_mib: int
    rows: tuple[Row, ...]
    verdict: Verdict
    notes: tuple[str, ...] = ()


Need = tuple[tuple[int, ...], int]  # MiB per GPU, host MiB


class _Sizer:
    """The estimator for the candidate, memoised by configuration, rounded up to MiB."""

    def __init__(self, candidate: ModelSpec, facts: ModelFacts) -> None:
        self.candidate, self.facts = candidate, facts
        self._memo: dict[tuple[object, ...], Need] = {}

    def need(
        self, n: int, shares: tuple[float, ...] | None, cache: str, ctx: int, layers: int | str
    ) -> Need:
        fractions = None if shares is None else tuple(s / sum(shares) for s in shares)
        key = (n, fractions, cache, ctx, layers)
        if key not in self._memo:
            cfg = run_config(self.candidate, n, tensor_split=shares).model_copy(
                update={
                    "ctx": ctx,
                    "cache_type_k": cache,
                    "cache_type_v": cache,
                    "gpu_layers": layers,
                }
            )
            result = estimate(self.facts, cfg)
            gpus = tuple(-(-result.device(f"cuda{i}").total // MIB) for i in range(n))
            self._memo[key] = (gpus, -(-result.device("host").total // MIB))
        return self._memo[key]


def _largest(fits: Callable[[int], bool], top: int) -> int | None:
    """The largest k in 1..top with fits(k), for a predicate true up to some k and false
    after; None when fits(1) is false."""
    if top < 1 or not fits(1):
        return None
    lo, hi = 1, top
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass
class _Search:
    """The searches over one machine for one candidate."""

    sizer: _Sizer
    machine: Rooms
    ctx: int
    cap: int

    @property
    def rooms(self) -> Sequence[Room]:
        return self.machine.gpus

    @property
    def host_free(self) -> int:
        return self.machine.host_free_mib

    @property
    def host_after(self) -> int:
        return self.machine.host_after_mib

    @property
    def holders(self) -> Sequence[Holder]:
        return self.machine.holders

    def _fits(self, need: Need, gpus: Sequence[int], *, after: bool) -> bool:
        per_gpu, host = need
        rooms = [self.rooms[g].after_mib if after else self.rooms[g].free_mib for g in gpus]
        return host <= (self.host_after if after else self.host_free) and all(
            n <= r for n, r in zip(per_gpu, rooms, strict=True)
        )

    def _max_ctx(
        self, gpus: tuple[int, ...], shares: tuple[float, ...] | None, cache: str, *, after: bool
    ) -> int | None:
        def fits(k: int) -> bool:
            ctx = min(k * CTX_STEP, self.cap)
            return self._fits(
                self.sizer.need(len(gpus), shares, cache, ctx, "all"), gpus, after=after
            )

        k = _largest(fits, -(-self.cap // CTX_STEP))
        return None if k is None else min(k * CTX_STEP, self.cap)

    def _giving_way(self, need: Need, gpus: Sequence[int]) -> tuple[str, ...]:
        """Lower-priority models on these GPUs (or, when the host is short, anywhere) that give
        way, lowest first, until the candidate fits."""
        per_gpu, host_need = need
        room = {g: self.rooms[g].free_mib for g in gpus}
        host = self.host_free
        out: list[str] = []
        for h in self.holders:
            if host >= host_need and all(n <= room[g] for n, g in zip(per_gpu, gpus, strict=True)):
                break
            if host >= host_need and not set(h.mib) & set(gpus):
                continue
            out.append(h.name)
            host += h.host_mib
            for g in gpus:
                room[g] += h.mib.get(g, 0)
        return tuple(out)

    def row(self, gpus: tuple[int, ...], shares: tuple[float, ...] | None, cache: str) -> Row:
        labels = tuple(self.rooms[g].budget.label for g in gpus)
        largest = self._max_ctx(gpus, shares, cache, after=False)
        displacing = None
        if self.holders and largest != self.cap:
            found = self._max_ctx(gpus, shares, cache, after=True)
            displacing = found if found != largest else None
        need = self.sizer.need(len(gpus), shares, cache, self.ctx, "all")
        split = None if shares is None else tuple(s / sum(shares) for s in shares)
        if self._fits(need, gpus, after=False):
            at = AtCtx("fits", need[0], need[1])
        elif self._fits(need, gpus, after=True):
            at = AtCtx("displacing", need[0], need[1], self._giving_way(need, gpus))
        elif len(gpus) == 1:
            at = self._partial(gpus, cache, need)
        else:
            at = AtCtx("no", need[0], need[1])
        return Row(labels, split, cache, largest, displacing, at)

    def _partial(self, gpus: tuple[int, ...], cache: str, need: Need) -> AtCtx:
        """The most layers (-ngl, the output head counted) one GPU takes at the asked ctx."""
        n_layer = self.sizer.facts.n_layer

        def fits(k: int) -> bool:
            return self._fits(self.sizer.need(1, None, cache, self.ctx, k), gpus, after=True)

        layers = _largest(fits, n_layer)
        if layers is None:
            return AtCtx("no", need[0], need[1])
        partial = self.sizer.need(1, None, cache, self.ctx, layers)
        gives = () if self._fits(partial, gpus, after=False) else self._giving_way(partial, gpus)
        return AtCtx("partial", need[0], partial[1], gives, layers, partial[0][0])


def _verdict_from_rows(rows: Sequence[Row], cache_types: Sequence[str]) -> Verdict:
    """Without a desired file: the first cache type (in the order asked) that fits with every
    layer, on every GPU (or split) where it does; else the most layers on one GPU."""
    for status in ("fits", "partial"):
        for cache in cache_types:
            hits = [r for r in rows if r.cache_type == cache and r.at.status == status]
            if not hits:
                continue
            if status == "partial":
                best = max(hits, key=lambda r: r.at.gpu_layers or 0)
                need = {best.gpus[0]: best.at.partial_mib or 0, "host": best.at.host_mib}
                return Verdict("partial", cache, best.gpus, best.at.gpu_layers, need)
            singles = [r for r in hits if len(r.gpus) == 1]
            where = tuple(r.gpus[0] for r in singles) or hits[0].gpus
            first = singles[0] if singles else hits[0]
            need = dict(zip(first.gpus, first.at.need_mib, strict=True))
            need["host"] = first.at.host_mib
            return Verdict("fits", cache, where, "all", need, split=not singles)
    return Verdict("no", reason="no GPU has room for it, not even with 1 layer")


def what_if(
    candidate: ModelSpec,
    cand_facts: ModelFacts,
    observed: ObservedState,
    *,
    desired: Desired | None = None,
    facts: Mapping[str, ModelFacts] | None = None,
    problems: Mapping[str, str] | None = None,
    cache_types: Sequence[str] = DEFAULT_CACHE_TYPES,
) -> WhatIf:
    """Would `candidate` (its `ctx`, `parallel`, `flash_attn`, `priority`, `pin`, `split` as
    asked) fit on `observed`, beside what runs, or beside what `desired`'s plan runs?"""
    with_file = desired is not None
    spec = desired if desired is not None else Desired(version=1)
    facts = dict(facts or {})
    notes: list[str] = []
    trained = cand_facts.n_ctx_train
    cap = trained if trained > 0 else UNKNOWN_TRAINED_CTX
    if trained <= 0:
        notes.append(f"the GGUF does not give its trained context; searched up to {cap}")
    elif candidate.ctx > trained:
        notes.append(f"ctx {candidate.ctx} is above the model's trained context {trained}")
    room = rooms(spec, observed, facts, candidate, with_file=with_file)
    search = _Search(_Sizer(candidate, cand_facts), room, candidate.ctx, cap)
    where = places(candidate, room.gpus)
    rows = tuple(search.row(gpus, shares, cache) for cache in cache_types for gpus, shares in where)
    verdict = _verdict_from_rows(rows, cache_types)
    if not rows:
        why = _why_not(room.gpus) if room.gpus else observed.gpu_note or "no NVIDIA GPU"
        verdict = Verdict("no", reason=f"no GPU may take it ({why})")
    if with_file:  # the file's planner decides; the rows say which settings to ask it for
        cache, layers = verdict.cache_type, verdict.gpu_layers
        displacing = [r.cache_type for r in rows if r.at.status == "displacing"]
        if displacing and verdict.status != "fits":  # only with a file are there holders
            cache, layers = displacing[0], None
        verdict = planned(
            spec,
            observed=observed,
            facts=facts,
            problems=dict(problems or {}),
            candidate=candidate,
            cand_facts=cand_facts,
            cache_type=cache,
            gpu_layers=layers,
        )
    if not room.gpus:
        notes.append(observed.gpu_note or "no NVIDIA GPU")
    elif not any(r.place for r in room.gpus):
        notes.append("no GPU may take a new start: " + _why_not(room.gpus))
    return WhatIf(
        candidate=candidate,
        facts=cand_facts,
        ctx=candidate.ctx,
        cap=cap,
        cache_types=tuple(cache_types),
        rooms=room.gpus,
        host_free_mib=room.host_free_mib,
        rows=rows,
        verdict=verdict,
        notes=tuple(notes),
    )


def _why_not(gpus: Sequence[Room]) -> str:
    return "; ".join(
        f"GPU {r.budget.label}: {r.budget.why_not or r.budget.too_hot}" for r in gpus if not r.place
    )
