"""Live consilium sessions and the live notifications of consult cases.

The protocol between server and browser (HTTP, the Socket.IO namespace ``/consilium``, changes,
state, ordering, resume, shared render streams) is ``docs/live-consilium.md``. Modules:
:mod:`.models` (tables), :mod:`.sessions` (lifecycle and who may join), :mod:`.sequencer` (the
per-session sequence, written in the database), :mod:`.state` (the fold), :mod:`.events` (event
names and payload models), :mod:`.hub` (this process's writer, coalescer and presence),
:mod:`.feed` (a session's ordered delivery and state in this process), :mod:`.bus` (between web
processes), :mod:`.namespace` and :mod:`.routes` (the adapters; :mod:`.connection` and
:mod:`.mark_events` beside the namespace), :mod:`.render_share` (shared render streams),
:mod:`.record` (what a session leaves in the case timeline); the protocol: :mod:`.protocol`
(rules), :mod:`.protocol_fold` (its part of the state), :mod:`.protocol_close` (closing: PDF to
the case, the archive), :mod:`.protocol_pdf`, :mod:`.protocol_dicom`, :mod:`.protocol_models`,
:mod:`.protocol_routes` (with replay's); :mod:`.replay` (the state at any seq, the timeline).
"""
