"""A job's tasks, indexed so that what one request or one scheduler tick reads does not
grow with the number of tasks in the job.

:class:`TaskTable` is the mapping of a job's tasks (lower-case id -> task) and keeps, as
tasks are added, change state and are deleted:

- the ids in order (List Tasks pages by id), and the ids of each state;
- each state's entries by the time tasks entered it (``stateTransitionTime``), so that a
  listing of the tasks that changed since an instant reads only those;
- the task counts and task slot counts of Get Task Counts, as counters;
- the active tasks in the order they were added: those that may run (no ``dependsOn``,
  or dependencies met when last looked at) in a queue for the scheduler, the others
  held until a task they depend on completes (``_dependencies``).

A task tells its table when it changes state (:meth:`TaskTable.moved`); the table never
changes a task.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

_T = TypeVar("_T", str, tuple[int, str])

#: The states a task is counted under in Get Task Counts (``preparing`` counts as running).
COUNTED = {"active": "active", "preparing": "running", "running": "running", "completed": "completed"}
COUNT_NAMES = ("active", "running", "completed", "succeeded", "failed")


class SortedKeys(Generic[_T]):
    """A sorted set of keys: adding, removing and reading from a key on cost about the
    logarithm of its size (sorted sublists of about ``LOAD`` keys each, the layout of
    ``sortedcontainers.SortedList``, https://grantjenks.com/docs/sortedcontainers/)."""

    LOAD = 1000

    def __init__(self) -> None:
        self._lists: list[list[_T]] = []
        self._maxes: list[_T] = []
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def add(self, key: _T) -> None:
        if not self._lists:
            self._lists.append([key])
            self._maxes.append(key)
            self._len = 1
            return
        i = bisect.bisect_left(self._maxes, key)
        if i == len(self._maxes):
            i -= 1
            self._lists[i].append(key)
            self._maxes[i] = key
        else:
            sub = self._lists[i]
            j = bisect.bisect_left(sub, key)
            if j < len(sub) and sub[j] == key:
                return
            sub.insert(j, key)
        self._len += 1
        sub = self._lists[i]
        if len(sub) > 2 * self.LOAD:
            half = sub[self.LOAD :]
            del sub[self.LOAD :]
            self._maxes[i] = sub[-1]
            self._lists.insert(i + 1, half)
            self._maxes.insert(i + 1, half[-1])

    def discard(self, key: _T) -> None:
        i = bisect.bisect_left(self._maxes, key)
        if i == len(self._maxes):
            return
        sub = self._lists[i]
        j = bisect.bisect_left(sub, key)
        if j == len(sub) or sub[j] != key:
            return
        del sub[j]
        self._len -= 1
        if not sub:
            del self._lists[i]
            del self._maxes[i]
        elif j == len(sub):
            self._maxes[i] = sub[-1]

    def after(self, key: _T | None) -> Iterator[_T]:
        """The keys greater than ``key`` (all with None), in order. Do not change the set
        while iterating."""
        i, j = 0, 0
        if key is not None:
            i = bisect.bisect_right(self._maxes, key)
            if i < len(self._lists):
                j = bisect.bisect_right(self._lists[i], key)
        for n in range(i, len(self._lists)):
            yield from self._lists[n][j:] if n == i else self._lists[n]


class IndexedTask(Protocol):
    """What the table reads of a task (the model's ``Task``, which imports this module)."""

    @property
    def id(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def state_time(self) -> datetime: ...

    @property
    def required_slots(self) -> int: ...

    @property
    def spec(self) -> dict[str, Any]: ...

    @property
    def execution(self) -> dict[str, Any]: ...

    def satisfies_dependents(self) -> bool: ...


_V = TypeVar("_V", bound=IndexedTask)


class TaskTable(Mapping[str, _V]):
    """A job's tasks by lower-case id, with the indexes of the module docstring."""

    def __init__(self) -> None:
        self._tasks: dict[str, _V] = {}
        self._ids: SortedKeys[str] = SortedKeys()
        self._by_state: dict[str, SortedKeys[str]] = {}
        #: state -> (state_time, serial, key) of each entry into it, sorted; entries of
        #: tasks that have left since are dropped when read, and in bulk from time to time.
        self._entered: dict[str, list[tuple[datetime, int, str]]] = {}
        self._serial = itertools.count()
        self._order: dict[str, int] = {}  # key -> order of addition
        #: The active tasks that may run, by order of addition: (order, key).
        self._runnable: SortedKeys[tuple[int, str]] = SortedKeys()
        #: The active tasks with dependencies not met when last looked at: key -> order.
        self._held: dict[str, int] = {}
        #: Held tasks not looked at yet, and tasks that began to satisfy their dependents
        #: (completed so, or deleted after): what the scheduler reads next (:meth:`news`).
        self._fresh: list[str] = []
        self._woken: list[str] = []
        #: key -> the held tasks that wait for it; the held tasks that wait for a range.
        self._waiting_on: dict[str, set[str]] = {}
        self._range_held: set[str] = set()
        self._counted: dict[str, tuple[str, ...]] = {}  # key -> the counters it is in
        self.counts = dict.fromkeys(COUNT_NAMES, 0)
        self.slots = dict.fromkeys(COUNT_NAMES, 0)

    # -------------------------------------------------------------- the mapping

    def __getitem__(self, key: str) -> _V:
        return self._tasks[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def add(self, task: _V) -> None:
        """Add a new task (its id not in the table)."""
        key = task.id.lower()
        self._tasks[key] = task
        self._ids.add(key)
        self._order[key] = next(self._serial)
        self._enter(key, task)

    def remove(self, key: str) -> None:
        """Delete the task ``key``."""
        task = self._tasks.pop(key)
        if task.satisfies_dependents():
            self._woken.append(key)
        self._leave(key, task.state)
        self._ids.discard(key)
        del self._order[key]

    def moved(self, task: _V, old_state: str) -> None:
        """``task`` went from ``old_state`` to its state now."""
        key = task.id.lower()
        if self._tasks.get(key) is not task:
            return  # deleted meanwhile
        self._leave(key, old_state)
        self._enter(key, task)

    def _enter(self, key: str, task: _V) -> None:
        state = task.state
        self._by_state.setdefault(state, SortedKeys()).add(key)
        log = self._entered.setdefault(state, [])
        bisect.insort(log, (task.state_time, next(self._serial), key))
        if len(log) > 2 * len(self._by_state[state]) + 1000:
            self._entered[state] = [e for e in log if self._current(e, state)]
        if state == "active":
            if task.spec.get("dependsOn"):
                self._held[key] = self._order[key]
                self._fresh.append(key)
            else:
                self._runnable.add((self._order[key], key))
        elif state == "completed" and task.satisfies_dependents():
            self._woken.append(key)
        counted = self._counters(task)
        self._counted[key] = counted
        for name in counted:
            self.counts[name] += 1
            self.slots[name] += task.required_slots

    def _leave(self, key: str, state: str) -> None:
        self._by_state[state].discard(key)
        if state == "active":
            self._runnable.discard((self._order[key], key))
            self._held.pop(key, None)
        task = self._tasks.get(key)
        slots = task.required_slots if task is not None else 0
        for name in self._counted.pop(key, ()):
            self.counts[name] -= 1
            self.slots[name] -= slots

    @staticmethod
    def _counters(task: IndexedTask) -> tuple[str, ...]:
        name = COUNTED.get(task.state)
        if name is None:
            return ()
        if name != "completed":
            return (name,)
        return (name, "succeeded" if task.execution.get("result") == "success" else "failed")

    def _current(self, entry: tuple[datetime, int, str], state: str) -> bool:
        task = self._tasks.get(entry[2])
        return task is not None and task.state == state and task.state_time == entry[0]

    # -------------------------------------------------------------- reading

    def count(self, *states: str) -> int:
        """How many tasks are in any of ``states``."""
        return sum(len(self._by_state.get(s, ())) for s in states)

    def ids(self, state: str | None = None, after: str | None = None) -> Iterator[str]:
        """The keys (of the tasks in ``state``) after ``after``, in order."""
        keys = self._ids if state is None else self._by_state.get(state)
        return iter(()) if keys is None else keys.after(after)

    def entered_since(self, state: str, since: datetime) -> list[str]:
        """The keys of the tasks in ``state`` that entered it at or after ``since``."""
        log = self._entered.get(state, [])
        start = bisect.bisect_left(log, (since,))
        return [e[2] for e in log[start:] if self._current(e, state)]

    def states(self) -> list[str]:
        return list(self._by_state)

    def in_state(self, *states: str) -> list[_V]:
        """The tasks in any of ``states``."""
        return [self._tasks[k] for s in states for k in self.ids(s)]

    def runnable(self, after: tuple[int, str] | None = None) -> Iterator[tuple[int, str]]:
        """The queue of active tasks that may run, from after ``after`` (do not change
        the table while iterating)."""
        return self._runnable.after(after)

    def held(self) -> list[_V]:
        """The active tasks held for their dependencies, in order of addition."""
        return [self._tasks[k] for k, _ in sorted(self._held.items(), key=lambda kv: kv[1])]

    def release(self, key: str) -> None:
        """Move the held task ``key`` to the runnable queue (its dependencies are met)."""
        order = self._held.pop(key, None)
        if order is not None:
            self._runnable.add((order, key))

    def hold(self, key: str) -> None:
        """Move the runnable task ``key`` back to the held ones (its dependencies are not
        met: a task it depended on was reactivated); it is looked at again next time."""
        order = self._order[key]
        self._runnable.discard((order, key))
        self._held[key] = order
        self._fresh.append(key)

    def is_held(self, key: str) -> bool:
        return key in self._held

    def news(self, *, ranges: bool) -> list[str]:
        """The held tasks to look at again, in order of addition: those not looked at
        yet, and those waiting for a task that began to satisfy its dependents (with
        ``ranges``, any of those had an integer id: every task waiting for a range too)."""
        keys = set(self._fresh)
        for key in self._woken:
            keys |= self._waiting_on.pop(key, set())
        if ranges:
            keys |= self._range_held
            self._range_held = set()
        self._fresh, self._woken = [], []
        return sorted((k for k in keys if k in self._held), key=self._held.__getitem__)

    def woken(self) -> list[str]:
        """The keys of the tasks that began to satisfy their dependents since :meth:`news`."""
        return list(self._woken)

    def wait_for(self, key: str, ids: list[str], *, ranges: bool) -> None:
        """The held task ``key`` waits for the tasks ``ids`` (and, with ``ranges``, a range)."""
        for dep in ids:
            self._waiting_on.setdefault(dep, set()).add(key)
        if ranges:
            self._range_held.add(key)
