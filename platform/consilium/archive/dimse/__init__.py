"""The archive's DIMSE side (PS3.4 Verification, Storage, Query/Retrieve FIND/MOVE/GET).

- :mod:`.handlers`: the services as plain functions over the archive (and who may associate);
- :mod:`.status`: every outcome as the DIMSE status a peer gets;
- :mod:`.wire`: PDUs and command sets on the wire, read within length and time bounds;
- :mod:`.lean`: the lean transport (storage, verification, C-FIND on the connection's thread);
- :mod:`.pynetdicom_server`: pynetdicom's transport (C-MOVE, C-GET, and all when lean is off);
- :mod:`.listener`: accepts connections, checks the first PDU, admits and routes associations.

Imports go one way: listener -> transports -> handlers -> status; wire is used by all three.
"""
