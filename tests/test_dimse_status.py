"""The DIMSE layer's one table of statuses is complete, and the pynetdicom seams the archive's
transport relies on are still where they were when it was written."""

from __future__ import annotations

import inspect

import pynetdicom
from pynetdicom.dul import DULServiceProvider
from pynetdicom.service_class import QueryRetrieveServiceClass, ServiceClass

from consilium.archive.dimse import wire
from consilium.archive.dimse.status import (
    ASSOCIATION_REJECTION,
    STORE_STATUS,
    UNABLE_TO_PROCESS,
    AssociationRefusal,
    QueryRefusal,
    Service,
    query_status,
    store_status,
)
from consilium.archive.ingest import Outcome, Refusal


def _is_store_failure(status: int) -> bool:
    """PS3.4 B.2.3 and PS3.7 C.4: refused (A7xx), error (A9xx, Cxxx) or failure (01xx/02xx)."""
    return (0xA700 <= status <= 0xA7FF or 0xA900 <= status <= 0xA9FF
            or 0xC000 <= status <= 0xCFFF or 0x0100 <= status <= 0x02FF)


def test_every_ingest_refusal_has_a_c_store_status() -> None:
    """A refusal added to ingest must be given its status here (else a KeyError per C-STORE)."""
    missing = [r for r in Refusal if r not in STORE_STATUS]
    assert missing == [], f"no DIMSE status for {missing}: add them to dimse/status.py"
    for refusal in Refusal:
        assert _is_store_failure(store_status(Outcome.REFUSED, refusal)), refusal
    assert store_status(Outcome.STORED, None) == store_status(Outcome.DUPLICATE, None) == 0


def test_every_query_and_association_refusal_has_an_answer() -> None:
    for service in Service:
        assert 0xC000 <= UNABLE_TO_PROCESS[service] <= 0xCFFF
        assert query_status(service, QueryRefusal.UNREADABLE_IDENTIFIER) == \
            UNABLE_TO_PROCESS[service]
    assert query_status(Service.MOVE, QueryRefusal.UNKNOWN_DESTINATION) == 0xA801
    for refusal in AssociationRefusal:
        result, source, reason = ASSOCIATION_REJECTION[refusal]
        assert result in (1, 2) and source in (1, 2, 3) and reason > 0
        assert wire.reject_pdu(result, source, reason)[7:] == bytes([result, source, reason])


def test_the_pynetdicom_seams_are_where_they_were() -> None:
    """pynetdicom_server relies on pynetdicom 3.0's internals at five points; if an upgrade
    moves one, this fails before the byte-identical retrieval tests do:

    - the C-GET service sends each sub-operation with ``self.assoc.send_c_store`` (the
      acceptor: our ArchiveAssociation), and C-MOVE opens the destination association with
      ``self.ae.associate`` (``self.ae`` being the association's AE: our ArchiveAE) and sends
      on it with ``store_assoc.send_c_store``;
    - a handler's exception before its first yield is answered with 0xC411/0xC511;
    - the DUL reads each PDU as recv(6), then recv(length) (CheckedSocket's length check);
    - ``send_c_store`` with a path sends the file's bytes when STORE_SEND_CHUNKED_DATASET;
    - the reactor hands what it takes off the DIMSE queue to ``_serve_request``, which drops
      what is not a request (keep_responses_for_the_sender)."""
    assert pynetdicom.__version__.startswith("3.0."), pynetdicom.__version__
    get = inspect.getsource(QueryRetrieveServiceClass._get_scp)
    move = inspect.getsource(QueryRetrieveServiceClass._move_scp)
    assert "self.assoc.send_c_store(dataset" in get
    assert "self.ae.associate(" in move and "store_assoc.send_c_store(" in move
    assert "ctx.error_status = 0xC411" in get and "ctx.error_status = 0xC511" in move
    assert UNABLE_TO_PROCESS[Service.GET] == 0xC411 and UNABLE_TO_PROCESS[Service.MOVE] == 0xC511
    assert "return self.assoc.ae" in inspect.getsource(ServiceClass)
    read = inspect.getsource(DULServiceProvider._read_pdu_data)
    assert "self.socket.recv(6)" in read and "self.socket.recv(pdu_length)" in read
    store = inspect.getsource(pynetdicom.association.Association.send_c_store)
    assert "STORE_SEND_CHUNKED_DATASET" in store and "_dataset_path" in store
    reactor = inspect.getsource(pynetdicom.association.Association._run_reactor)
    assert "self.dimse.get_msg(block=False)" in reactor and "self._serve_request(msg" in reactor
    serve = inspect.getsource(pynetdicom.association.Association._serve_request)
    assert "if not msg.is_valid_request:" in serve
