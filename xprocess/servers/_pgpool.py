"""Test databases made ahead of need and dropped after use, off the tests' path.

Each worker keeps a pool: one thread creates databases from the template before tests ask for
them, another drops the databases tests gave back. A test then waits for a database only when
it comes faster than they are made; at ``-n 4`` the one server makes the four workers' databases
at once, while their tests run.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["DatabasePool"]

Connect = Callable[[], Any]


class DatabasePool:
    """``ahead`` databases ready at any time; ``take`` one, ``give_back`` it when done.

    ``create(connection)`` makes a database and returns its name, ``drop(connection, name)``
    drops one; each thread has a connection of its own from ``connect()``. ``connect_to(name)``
    connects to a new database ahead too, so that a test does not wait for that either. A
    failure is not kept: the next ``take`` makes one in the caller's thread, raising the error.
    """

    def __init__(
        self,
        connect: Connect,
        create: Callable[[Any], str],
        drop: Callable[[Any, str], None],
        connect_to: Callable[[str], Any],
        *,
        ahead: int = 2,
    ) -> None:
        self._connect = connect
        self._create = create
        self._drop = drop
        self._open = connect_to
        self._slots = threading.Semaphore(ahead)
        self._ready: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._used: queue.Queue[str | None] = queue.Queue()
        self._closing = threading.Event()
        self._maker = threading.Thread(target=self._make, name="xprocess-pg-make", daemon=True)
        self._dropper = threading.Thread(target=self._drops, name="xprocess-pg-drop", daemon=True)
        self._maker.start()
        self._dropper.start()

    def take(self) -> tuple[str, Any]:
        """A database of the caller's own and a connection to it: ready ones, or made now if
        the maker failed."""
        while True:
            try:
                ready = self._ready.get(timeout=0.5)
            except queue.Empty:
                if self._maker.is_alive():
                    continue
                ready = None
            if ready is None:  # the maker stopped on an error: make one here, raising it again
                with self._connect() as connection:
                    name = self._create(connection)
                return name, self._open(name)
            self._slots.release()
            return ready

    def give_back(self, name: str) -> None:
        """Drop ``name`` in the background."""
        self._used.put(name)

    def close(self) -> None:
        """Stop making databases; drop those made and given back; wait until that is done."""
        self._closing.set()
        self._slots.release()
        self._maker.join()
        while True:
            try:
                ready = self._ready.get_nowait()
            except queue.Empty:
                break
            if ready is not None:
                ready[1].close()
                self._used.put(ready[0])
        self._used.put(None)
        self._dropper.join()

    def _make(self) -> None:
        try:
            with self._connect() as connection:
                while True:
                    self._slots.acquire()
                    if self._closing.is_set():
                        return
                    name = self._create(connection)
                    self._ready.put((name, self._open(name)))
        except Exception:
            self._ready.put(None)  # the next take() creates, and raises, in its own thread

    def _drops(self) -> None:
        connection = None
        while (name := self._used.get()) is not None:
            try:
                if connection is None or connection.closed:
                    connection = self._connect()
                self._drop(connection, name)
            except Exception:  # what is not dropped here goes at the end of the run
                pass
        if connection is not None:
            connection.close()
