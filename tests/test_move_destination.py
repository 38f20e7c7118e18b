"""The association a C-MOVE opens to its destination keeps every response for the thread that
sent the request, whatever pynetdicom's reactor thread is doing meanwhile."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from pynetdicom import AE, StoragePresentationContexts
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from consilium.archive.dimse.pynetdicom_server import ArchiveAE
from tests.conftest import free_port


@pytest.fixture
def destination() -> Iterator[int]:
    """A real storage SCP (pynetdicom's) standing for the C-MOVE destination."""
    scp = AE(ae_title="DEST")
    scp.supported_contexts = StoragePresentationContexts
    port = free_port()
    server = scp.start_server(("127.0.0.1", port), block=False)
    try:
        yield port
    finally:
        server.shutdown()


def test_a_response_reaching_the_reactor_stays_for_the_sender(destination: int) -> None:
    archive = ArchiveAE(ae_title="ARCHIVE")
    archive.add_requested_context(CTImageStorage)
    assoc = archive.associate("127.0.0.1", destination, ae_title="DEST")
    assert assoc.is_established
    try:
        response = C_STORE()
        response.MessageIDBeingRespondedTo = 7
        response.AffectedSOPClassUID = CTImageStorage
        response.Status = 0x0000
        assert not response.is_valid_request
        # what the race looks like: the response is queued while the reactor runs (it polls
        # the queue every millisecond); pynetdicom's own reactor would take and drop it
        assoc.dimse.msg_queue.put((1, response))
        time.sleep(0.2)
        context_id, msg = assoc.dimse.get_msg(block=False)
        assert msg is response and context_id == 1
    finally:
        assoc.release()
