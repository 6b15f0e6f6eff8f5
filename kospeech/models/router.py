"""Which rows of a batch go through which adapter: the per-row selection the model's trunk loop and head take.

A router is passed explicitly to :meth:`DeepSpeech2.run` and :meth:`DeepSpeech2.classify` (PEFT's
``_mixed_batch_forward`` passes ``adapter_names`` the same way, not through hooks). It holds *routes*: an adapter
module and the batch rows it serves (``None``: every row). Rows in no route get the base model's output. Each
adapter is applied where its registry entry places it, merged by its entry's rule
(:func:`~kospeech.models.adapter.apply_head_adapter`, :func:`~kospeech.models.adapter.apply_layer_adapter`), so a
single adapter on every row, a mixed-user batch and a cached training step compute the same function.

Typical use:

- one adapter on every row (training, a model's attached adapter): ``AdapterRouter.single(adapter)``;
- a batch mixing users: ``AdapterRouter.from_names(["alice", None, "bob", "alice"], adapters)`` with ``adapters``
  any mapping of names to modules (an ``nn.ModuleDict``, a recognizer's adapter cache, ...);
- explicit row groups: ``AdapterRouter([(rows, adapter), ...], batch_size=B)``;
- several users' training batches side by side, each padded to its own length and drawing its adapter's random
  numbers from its own stream (a multi-user training step): ``AdapterRouter.side_by_side([RowBlock(...), ...])``.

In eval mode, the routes of one type whose registry entry knows how to compute several modules together
(:attr:`~kospeech.models.adapter.AdapterType.grouped`, e.g. the ``encoder`` type's bottlenecks stacked into batched
matmuls) run as one *grouped* route: one gather of their rows, one computation, one scatter per call point, instead
of one per adapter. Routes in training mode, with their own frames or random streams (training steps), and modules
that cannot be stacked (different sizes) run one route at a time; both ways compute the same function.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import defaultdict
from typing import Callable, ContextManager, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from kospeech.models.adapter import (
    EXTRACTOR_OUTPUT,
    AdapterType,
    CachePoint,
    GroupedCall,
    MergeStrategy,
    Placement,
    adapter_type_of,
    apply_head_adapter,
    apply_layer_adapter,
)
from kospeech.models.utils import lengths_to_mask

__all__ = ["AdapterRouter", "AdapterGroup", "Route", "RowBlock"]

AdapterGroup = Tuple[Union[Tensor, Sequence[int]], nn.Module]
"""One group of a mixed-adapter batch: the batch rows (indices) that go through one adapter module."""


class Route(NamedTuple):
    """One adapter and the rows it serves.

    Attributes:
        rows: (n,) int64 row indices, or ``None`` for every row of the batch.
        adapter: the adapter module.
        entry: its registry entry.
        frames: the adapter sees only the first ``frames`` time steps of its rows (their own padded length inside a
            longer batch; later frames keep the base value), or ``None`` for all of them.
        random_stream: a context manager factory around every call of the adapter (e.g. a user's own RNG stream,
            so its dropout draws what it would alone), or ``None``.
        grouped: for a grouped route (several adapters of one type computed together, see the module docstring):
            its entry's :data:`~kospeech.models.adapter.GroupedCall`; ``adapter`` is then the first of them.
        which: (n,) int64, for a grouped route: the index of each row's own adapter in the group.
        first_row: for rows that are consecutive (``rows[0] .. rows[0] + n - 1``, the blocks of
            :meth:`AdapterRouter.side_by_side`), ``rows[0]``: cutting them out is then a view, not a copy.
    """

    rows: Optional[Tensor]
    adapter: nn.Module
    entry: AdapterType
    frames: Optional[int] = None
    random_stream: Optional[Callable[[], ContextManager]] = None
    grouped: Optional[GroupedCall] = None
    which: Optional[Tensor] = None
    first_row: Optional[int] = None

    def call(self, *inputs: Tensor) -> Tensor:
        """The adapter's output on ``inputs`` (already cut to this route's rows and frames), in its random stream."""
        if self.grouped is not None:
            return self.grouped(self.which.to(inputs[0].device), *inputs)
        with self.random_stream() if self.random_stream is not None else contextlib.nullcontext():
            return self.adapter(*inputs)

    def cut(self, value: Tensor) -> Tensor:
        """This route's rows of a (B, T', ...) batch value, cut to its frames: (n, frames, ...)."""
        rows = self.rows_of(value)
        return rows if self.frames is None else rows[:, : self.frames]

    def rows_of(self, value: Tensor) -> Tensor:
        """This route's rows of a (B, ...) batch value: (n, ...), a view for consecutive rows."""
        if self.rows is None:
            return value
        if self.first_row is not None:
            return value.narrow(0, self.first_row, self.rows.numel())
        return value.index_select(0, self.rows.to(value.device))


class RowBlock(NamedTuple):
    """Consecutive batch rows served by one adapter (see :meth:`AdapterRouter.side_by_side`).

    Attributes:
        adapter: the adapter module.
        num_rows: n, rows in the block.
        frames: the block's own padded length T'_u (its longest row).
        random_stream: context manager factory around the adapter's calls, or ``None``.
    """

    adapter: nn.Module
    num_rows: int
    frames: int
    random_stream: Optional[Callable[[], ContextManager]] = None


class AdapterRouter:
    """Per-row adapter selection for one batch (see the module docstring).

    Args:
        groups: ``(rows, adapter)`` pairs: ``rows`` a (n,) integer tensor or list of distinct batch row indices,
            ``adapter`` a module of a registered adapter type. A row belongs to at most one group.
        batch_size: B, rows of the batch the groups index.

    Raises:
        TypeError: a group's adapter is not an adapter module of a registered type.
        ValueError: a group is malformed, or its rows are out of range, not integers, or repeat a row. Groups with
            no rows are dropped.
    """

    def __init__(self, groups: Sequence[AdapterGroup], batch_size: int) -> None:
        routes = []
        taken = torch.zeros(batch_size, dtype=torch.bool)
        for position, group in enumerate(groups):
            if not isinstance(group, (tuple, list)) or len(group) != 2:
                raise ValueError(f"group {position} must be a (row indices, adapter) pair, got {type(group).__name__}")
            rows, adapter = group
            try:
                entry = adapter_type_of(adapter)
            except TypeError as exc:
                raise TypeError(f"group {position}: expected an adapter module, got {type(adapter).__name__}") from exc
            if isinstance(rows, (list, tuple)) and not rows:
                continue  # as_tensor would give an empty float tensor
            rows = torch.as_tensor(rows).reshape(-1).cpu()
            if rows.is_floating_point() or rows.is_complex() or rows.dtype == torch.bool:
                raise ValueError(f"group {position}: row indices must be integers, got {rows.dtype}")
            rows = rows.long()
            if rows.numel() == 0:
                continue
            if int(rows.min()) < 0 or int(rows.max()) >= batch_size:
                raise ValueError(f"group {position}: row indices must lie in [0, {batch_size}), got {rows.tolist()}")
            if len(set(rows.tolist())) != rows.numel() or bool(taken[rows].any()):
                raise ValueError(f"group {position}: rows {rows.tolist()} repeat a row of this or an earlier group")
            taken[rows] = True
            routes.append(Route(rows, adapter, entry))
        self.routes: List[Route] = routes
        self._batch_size: Optional[int] = batch_size
        self._planned: Optional[List[Route]] = None

    @classmethod
    def _of(cls, routes: List[Route], batch_size: Optional[int] = None) -> AdapterRouter:
        router = cls.__new__(cls)
        router.routes = routes
        router._batch_size = batch_size
        router._planned = None
        return router

    @classmethod
    def single(cls, adapter: nn.Module) -> AdapterRouter:
        """Every row through ``adapter`` (no gathering and scattering of rows: the training path)."""
        return cls._of([Route(None, adapter, adapter_type_of(adapter))])

    @classmethod
    def from_names(cls, names: Sequence[Optional[str]], adapters: Mapping[str, nn.Module]) -> AdapterRouter:
        """Route each row to the adapter named for it (``None``: the base model).

        Every name is checked before any compute, so a typo raises instead of silently giving base output.

        Args:
            names: one adapter name (or ``None``) per batch row.
            adapters: name -> adapter module.

        Raises:
            KeyError: a name that ``adapters`` lacks (the message lists the names it has).
        """
        unknown = sorted({name for name in names if name is not None and name not in adapters})
        if unknown:
            raise KeyError(f"no adapter named {unknown}; available: {sorted(adapters)}")
        rows_by_name: dict = {}
        for row, name in enumerate(names):
            if name is not None:
                rows_by_name.setdefault(name, []).append(row)
        return cls([(rows, adapters[name]) for name, rows in rows_by_name.items()], len(names))

    @classmethod
    def side_by_side(cls, blocks: Sequence[RowBlock]) -> AdapterRouter:
        """Blocks of consecutive rows, each through its own adapter, cut to its own frames, in its own random stream.

        This is how several users' training batches share one pass through the frozen layers: block ``u`` holds
        user ``u``'s batch (padded to its own longest row, ``frames``) inside a batch padded to the longest of all,
        and its adapter sees exactly the (n_u, frames_u, F) values it would see alone, so its dropout draws the same
        random numbers from the user's stream.

        Raises:
            TypeError: a block's adapter is not an adapter module of a registered type.
            ValueError: a block with no rows or no frames.
        """
        routes, start = [], 0
        for position, block in enumerate(blocks):
            if block.num_rows < 1 or block.frames < 1:
                raise ValueError(f"block {position}: needs rows and frames, got {block.num_rows} and {block.frames}")
            try:
                entry = adapter_type_of(block.adapter)
            except TypeError as exc:
                raise TypeError(
                    f"block {position}: expected an adapter module, got {type(block.adapter).__name__}"
                ) from exc
            rows = torch.arange(start, start + block.num_rows)
            routes.append(Route(rows, block.adapter, entry, block.frames, block.random_stream, first_row=start))
            start += block.num_rows
        return cls._of(routes, start)

    @property
    def adapters(self) -> List[nn.Module]:
        """Every routed adapter module, in route order."""
        return [route.adapter for route in self.routes]

    @property
    def layer_routes(self) -> List[Route]:
        """Routes of adapters placed after the RNN layers."""
        return [route for route in self.routes if route.entry.placement is Placement.RNN_LAYERS]

    @property
    def head_routes(self) -> List[Route]:
        """Routes of adapters placed at the head."""
        return [route for route in self.routes if route.entry.placement is Placement.HEAD]

    @property
    def planned_routes(self) -> List[Route]:
        """The routes as computed: groupable routes of one type merged into grouped routes (module docstring).

        Built on first use and kept: the stacked weights are taken from the adapters then (a router serves one
        batch).
        """
        if self._planned is None:
            self._planned = self._plan(self.routes, self._batch_size)
        return self._planned

    @staticmethod
    def _plan(routes: List[Route], batch_size: Optional[int]) -> List[Route]:
        by_type: dict = defaultdict(list)
        planned = []
        for route in routes:
            if (
                route.entry.grouped is not None
                and route.rows is not None
                and route.frames is None
                and route.random_stream is None
                and not route.adapter.training
            ):
                by_type[route.entry.name].append(route)
            else:
                planned.append(route)
        for members in by_type.values():
            grouped = members[0].entry.grouped([route.adapter for route in members]) if len(members) > 1 else None
            if grouped is None:
                planned.extend(members)
                continue
            rows = torch.cat([route.rows for route in members])
            which = torch.cat([torch.full_like(route.rows, index) for index, route in enumerate(members)])
            if rows.numel() == batch_size:  # every row of the batch: no gathering and scattering of rows
                which, rows = torch.empty_like(which).index_copy_(0, rows, which), None
            planned.append(members[0]._replace(rows=rows, grouped=grouped, which=which))
        return planned

    def to(self, device: torch.device) -> AdapterRouter:
        """The same routes with their row indices on ``device`` (the adapters are not moved)."""
        return self._of(
            [route._replace(rows=None if route.rows is None else route.rows.to(device)) for route in self.routes],
            self._batch_size,
        )

    def layer_mask(self, lengths: Tensor, frames: int, device: torch.device) -> Optional[Tensor]:
        """(B, T', 1) bool valid-frame mask for the layer adapters, or ``None`` when no route needs one."""
        if not self.layer_routes:
            return None
        return lengths_to_mask(lengths.to(device), frames).unsqueeze(-1)

    def apply_layer(self, layer_index: int, hidden: Tensor, mask: Optional[Tensor]) -> Tensor:
        """RNN layer ``layer_index``'s output (-1: the extractor's) after the layer adapters of every route.

        Inputs:
            hidden: (B, T', F) the layer's output.
            mask: (B, T', 1) bool valid frames, from :meth:`layer_mask`.

        Returns:
            (B, T', F): each routed row adapted by its adapter, other rows unchanged.
        """
        routes, pieces = [], []
        for route in self.planned_routes:
            if route.entry.placement is not Placement.RNN_LAYERS:
                continue
            if layer_index == EXTRACTOR_OUTPUT and route.entry.cache_point is not CachePoint.EXTRACTOR:
                continue  # a type is called at the extractor's output only when its entry starts there
            if route.rows is None and route.frames is None:
                hidden = apply_layer_adapter(route.adapter, layer_index, hidden, mask, route.call)
                continue
            adapted = apply_layer_adapter(
                route.adapter, layer_index, route.cut(hidden), route.cut(mask), route.call
            )  # (n, frames, F)
            routes.append(route)  # the routes' rows are disjoint: each reads rows no other route changes
            pieces.append(self._all_frames(route, hidden, adapted))
        return self._put_all(hidden, routes, pieces)

    def apply_head(self, features: Tensor, base_logits: Callable[[Tensor], Tensor]) -> Tensor:
        """Log-probabilities of the head: the base head's, with each routed row merged with its head adapter.

        Inputs:
            features: (B, T', F) trunk output.
            base_logits: computes the base head's (B, T', C) logits from ``features``; not called when one
                replacing adapter serves every row (its output is the whole answer).

        Returns:
            (B, T', C) log-probabilities.
        """
        routes = self.head_routes
        if len(routes) == 1 and routes[0].rows is None and routes[0].frames is None:
            route = routes[0]
            logits = None if route.entry.merge is MergeStrategy.REPLACE else base_logits(features)
            return apply_head_adapter(route.adapter, features, logits, route.call)
        logits = base_logits(features)  # (B, T', C)
        log_probs = torch.log_softmax(logits, dim=-1)
        routes, pieces = [], []
        for route in self.planned_routes:
            if route.entry.placement is not Placement.HEAD:
                continue
            adapted = apply_head_adapter(route.adapter, route.cut(features), route.cut(logits), route.call)
            if route.rows is None:  # a grouped route serving every row
                log_probs = self._all_frames(route, log_probs, adapted)
                continue
            routes.append(route)
            pieces.append(self._all_frames(route, log_probs, adapted))
        return self._put_all(log_probs, routes, pieces)

    @staticmethod
    def _all_frames(route: Route, value: Tensor, adapted: Tensor) -> Tensor:
        """``adapted`` (n, frames, ...) followed by the route's rows of ``value`` beyond its frames: (n, T', ...)."""
        if route.frames is None or route.frames >= value.size(1):
            return adapted
        return torch.cat([adapted, route.rows_of(value)[:, route.frames :]], dim=1)

    def _put_all(self, value: Tensor, routes: List[Route], pieces: List[Tensor]) -> Tensor:
        """``value`` with each route's rows replaced by its piece (n_r, T', ...), in one copy.

        Pieces of consecutive routes covering every row in order (side by side blocks) are simply concatenated.
        """
        if not pieces:
            return value
        if all(route.first_row is not None for route in routes) and [route.first_row for route in routes] == list(
            itertools.accumulate((route.rows.numel() for route in routes[:-1]), initial=0)
        ):
            if sum(piece.size(0) for piece in pieces) == value.size(0):
                return torch.cat(pieces)
        if len(pieces) == 1:
            return value.index_copy(0, routes[0].rows.to(value.device), pieces[0])
        rows = torch.cat([route.rows for route in routes]).to(value.device)
        return value.index_copy(0, rows, torch.cat(pieces))
