"""Requests sent on associations this archive opens get their own responses.

pynetdicom's reactor thread serves the requests that arrive on an association and pauses while
another thread sends (``send_c_store``, ``send_c_find``... clear its checkpoint and wait for
``_is_paused``). The reactor sets ``_is_paused`` before it waits and clears it only after
waking, so a sender can see a stale "paused" from the reactor's previous turn, send, and the
reactor, now running, takes the response off the queue, logs "Received unexpected C-STORE
service message" (or C-FIND...) and drops it: the sender then waits out the DIMSE timeout. Seen
under load on the C-MOVE destination association (about one C-MOVE in three on a busy
machine: one sub-operation timed out and every later one failed). The fix is per association,
not a patch of pynetdicom: what reaches the reactor that is not a request goes back on the
queue, where the sender's blocking read takes it. The seam is pinned by
tests/test_dimse_status.py against the pynetdicom version this was written for.
"""

from __future__ import annotations

from typing import Any

from pynetdicom.association import Association


def keep_responses_for_the_sender(assoc: Association) -> None:
    """Responses on ``assoc`` stay queued for the thread that sent the request; requests are
    served as pynetdicom serves them."""
    serve = assoc._serve_request

    def _serve_request(msg: Any, context_id: int) -> None:
        if msg.is_valid_request:
            serve(msg, context_id)
        else:
            assoc.dimse.msg_queue.put((context_id, msg))

    assoc._serve_request = _serve_request  # type: ignore[method-assign]
