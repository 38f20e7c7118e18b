"""A participant of a live consilium session for tests and benchmarks: a real python-socketio
client on the ``/consilium`` namespace of a real server, which applies the changes it receives
with the same fold as the server (:func:`consilium.live.state.apply`), the way the browser
does: in seq order, changes that arrive before the join's answer kept for after it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import socketio

from consilium.live.state import State, apply, clone

NAMESPACE = "/consilium"


class Participant:
    def __init__(self, url: str, http: httpx.Client, name: str = "",
                 on_frame: Callable[[dict[str, Any]], bool] | None = None) -> None:
        self.name = name
        self.url = url
        self.cookie = http.cookies["consilium_session"]
        self.changes: list[dict[str, Any]] = []  # every session:change, as it arrived
        self.frames: list[dict[str, Any]] = []
        self.closed: list[dict[str, Any]] = []
        self.invited: list[dict[str, Any]] = []
        self.state: State | None = None
        self.early: dict[int, dict[str, Any]] = {}
        self.arrived = threading.Condition()
        self.on_frame = on_frame
        self.client = self._client()

    def _client(self) -> socketio.Client:
        client = socketio.Client(reconnection=False)
        client.on("session:change", self._on_change, namespace=NAMESPACE)
        client.on("session:render", self._on_frame, namespace=NAMESPACE)
        client.on("session:closed", self._on_closed, namespace=NAMESPACE)
        client.on("consilium:invited", self._on_invited)
        client.connect(self.url, transports=["websocket"], namespaces=["/", NAMESPACE],
                       headers={"Cookie": f"consilium_session={self.cookie}"}, wait_timeout=10)
        return client

    # -- incoming ---------------------------------------------------------------------------

    def _on_change(self, change: dict[str, Any]) -> None:
        with self.arrived:
            self.changes.append(change)
            if self.state is None:
                self.early[int(change["seq"])] = change
            else:
                self._take(change)
            self.arrived.notify_all()

    def _take(self, change: dict[str, Any]) -> None:
        assert self.state is not None
        seq = int(change["seq"])
        if seq <= self.state["seq"]:
            return
        self.early[seq] = change
        while self.state["seq"] + 1 in self.early:
            apply(self.state, self.early.pop(self.state["seq"] + 1))

    def _on_frame(self, frame: dict[str, Any]) -> bool:
        keep = self.on_frame(frame) if self.on_frame is not None else True
        with self.arrived:
            self.frames.append({**frame, "received": time.monotonic()})
            self.arrived.notify_all()
        return keep

    def _on_closed(self, data: dict[str, Any]) -> None:
        with self.arrived:
            self.closed.append(data)
            self.arrived.notify_all()

    def _on_invited(self, data: dict[str, Any]) -> None:
        with self.arrived:
            self.invited.append(data)
            self.arrived.notify_all()

    # -- outgoing ---------------------------------------------------------------------------

    def call(self, event: str, data: dict[str, Any], timeout: float = 15) -> dict[str, Any]:
        answer = self.client.call(event, data, namespace=NAMESPACE, timeout=timeout)
        assert isinstance(answer, dict), answer
        return answer

    def send(self, event: str, data: dict[str, Any]) -> None:
        """Without waiting for the acknowledgement (a presenter dragging)."""
        self.client.emit(event, data, namespace=NAMESPACE)

    def join(self, session_id: str, last_seq: int | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"session_id": session_id}
        if last_seq is not None:
            data["last_seq"] = last_seq
        answer = self.call("session:join", data)
        if not answer.get("ok"):
            return answer
        with self.arrived:
            if "snapshot" in answer:
                self.state = answer["snapshot"]
            else:
                assert self.state is not None, "changes without a state to apply them to"
                for change in answer["changes"]:
                    self._take(change)
            for seq in sorted(self.early):
                if seq <= self.state["seq"]:
                    del self.early[seq]
            while self.state["seq"] + 1 in self.early:
                apply(self.state, self.early.pop(self.state["seq"] + 1))
        return answer

    def wait(self, predicate: Callable[[Participant], bool], timeout: float = 15) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: predicate(self), timeout), (
                self.name, self.state and self.state["seq"], len(self.changes))

    def wait_seq(self, seq: int, timeout: float = 15) -> None:
        self.wait(lambda p: p.state is not None and p.state["seq"] >= seq, timeout)

    def current(self) -> State:
        with self.arrived:
            assert self.state is not None
            return clone(self.state)

    def disconnect(self) -> None:
        if self.client.connected:
            self.client.disconnect()

    def reconnect(self) -> None:
        """A new connection (a dropped line, a reload keeps the last state it applied)."""
        self.disconnect()
        self.client = self._client()
