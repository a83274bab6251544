"""GPU by GPU: the search that settles tight cases, where models fill the GPUs to within a few
hundred MiB and a model-by-model search cannot prove that one more does not fit.

The GPUs are filled one after another. For each, the search chooses which of the models not
yet placed go there (with the option that starts on that GPU: a split also takes its share of
a later GPU at once); the GPU is then closed, and the memory it leaves unused is lost for good.
The slack, what all GPUs hold beyond what the models need at least, bounds that loss: a GPU
that cannot be filled to within the slack left ends the branch at once. A model whose every
option starts on a closed GPU, and cannot run on the CPU, ends it too. Failed states (GPU,
models placed, free memory, host) are remembered. Exact within its node limit.
"""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.plan.options import Option
from reconciler.plan.search import Item, Search, take

__all__ = ["pack"]


def pack(
    search: Search, items: Sequence[Item], limit: int
) -> tuple[dict[str, Option] | None, bool]:
    """An assignment of every item, or None; and whether the node limit cut the search short."""
    packer = _Packer(search, items, limit)
    found = packer.close(0, packer.slack0, packer.host) if packer.slack0 >= 0 else False
    search.nodes += min(packer.nodes, limit)
    return (dict(packer.chosen) if found else None), packer.nodes > limit


class _Packer:
    """The state of one bin-completion search; `close` and `fill` recurse into each other."""

    def __init__(self, search: Search, items: Sequence[Item], limit: int) -> None:
        self.search, self.limit, self.nodes = search, limit, 0
        self.free = list(search.capacity)
        self.count = [0] * len(self.free)
        self.chosen: dict[str, Option] = {}
        self.host = search.host
        self.movable: list[Item] = []
        for item in items:
            if item.fixed:
                o = item.options[0]
                self.chosen[item.name] = o
                self.host -= o.host_mib
                take(o, self.free, self.count)
            else:
                self.movable.append(item)
        free = self.free
        self.gpus = sorted(range(len(free)), key=lambda g: free[g])  # the smallest closes first
        position = {g: p for p, g in enumerate(self.gpus)}
        self.floor = [i.need[1] for i in self.movable]

        def first(o: Option) -> int:
            return min((position[g] for g in o.gpus), default=len(self.gpus))

        # per GPU position: (item index, its options starting there), largest piece first
        self.starts: list[list[tuple[int, list[Option]]]] = [[] for _ in self.gpus]
        for i, item in enumerate(self.movable):
            by_gpu: dict[int, list[Option]] = {}
            for o in item.options:
                if o.gpus:
                    by_gpu.setdefault(first(o), []).append(o)
            for p, opts in by_gpu.items():
                self.starts[p].append((i, opts))
        self.top: list[list[int]] = []  # the largest piece each candidate can put on that GPU
        for p, cands in enumerate(self.starts):
            g = self.gpus[p]
            sizes = {i: _largest(opts, g) for i, opts in cands}
            cands.sort(key=lambda c: -sizes[c[0]])
            self.top.append([sizes[i] for i, _ in cands])
        self.last_start = [max((first(o) for o in i.options), default=-1) for i in self.movable]
        self.cpu_option = [next((o for o in i.options if not o.gpus), None) for i in self.movable]
        self.slack0 = sum(max(f, 0) for f in free) - sum(self.floor)
        self.failed: set[tuple[object, ...]] = set()
        self.placed = [False] * len(self.movable)

    def close(self, p: int, slack: int, host_left: int) -> bool:
        """Everything from GPU position p on; `slack` is the loss still allowed."""
        if p == len(self.gpus):
            return _finish(self.movable, self.placed, self.cpu_option, self.chosen, host_left)
        if any(
            not self.placed[i] and self.last_start[i] < p and self.cpu_option[i] is None
            for i in range(len(self.movable))
        ):
            return False  # a model whose GPUs are all closed, and no CPU to fall back on
        key = (p, tuple(self.placed), tuple(self.free), host_left)
        if key in self.failed:
            return False
        if self.fill(p, 0, slack, host_left):
            return True
        if self.nodes <= self.limit:
            self.failed.add(key)
        return False

    def fill(self, p: int, c: int, slack: int, host_left: int) -> bool:
        """Choose, for GPU position p, whether candidates c, c+1, ... go there."""
        g = self.gpus[p]
        cands, top, placed = self.starts[p], self.top[p], self.placed
        room = max(self.free[g], 0)
        while True:
            self.nodes += 1
            if self.nodes > self.limit:
                return False
            while c < len(cands) and placed[cands[c][0]]:
                c += 1
            reachable = sum(top[j] for j in range(c, len(cands)) if not placed[cands[j][0]])
            if room - min(reachable, room) > slack:
                return False  # the candidates left cannot fill this GPU to within the slack
            if c == len(cands):
                return self.close(p + 1, slack - room, host_left)
            for o in cands[c][1]:
                if self._try(p, c, o, slack, host_left):
                    return True
            c += 1  # and now without candidate c

    def _try(self, p: int, c: int, o: Option, slack: int, host_left: int) -> bool:
        """Candidate c on GPU position p with option o, then the candidates after it."""
        i = self.starts[p][c][0]
        extra = o.total_mib - self.floor[i]
        if extra > slack or not self.search.fits(o, self.free, host_left, self.count):
            return False
        take(o, self.free, self.count)
        name = self.movable[i].name
        self.placed[i], self.chosen[name] = True, o
        if self.fill(p, c + 1, slack - extra, host_left - o.host_mib):
            return True
        self.placed[i] = False
        del self.chosen[name]
        take(o, self.free, self.count, +1)
        return False


def _largest(options: Sequence[Option], g: int) -> int:
    """The largest piece any of `options` puts on GPU g."""
    return max(n for o in options for h, n in zip(o.gpus, o.mib, strict=True) if h == g)


def _finish(
    movable: Sequence[Item],
    placed: list[bool],
    cpu_option: Sequence[Option | None],
    chosen: dict[str, Option],
    host_left: int,
) -> bool:
    """Every GPU closed: the models still out go to the CPU, if the host holds them."""
    rest = [i for i in range(len(movable)) if not placed[i]]
    need = 0
    for i in rest:
        o = cpu_option[i]
        if o is None:
            return False
        need += o.host_mib
    if need > host_left:
        return False
    for i in rest:
        o = cpu_option[i]
        assert o is not None
        chosen[movable[i].name] = o
    return True
