"""Live consilium sessions and the live notifications of consult cases.

The protocol between server and browser (HTTP, the Socket.IO namespace ``/consilium``, changes,
state, ordering, resume, shared render streams) is ``docs/live-consilium.md``. Modules:
:mod:`.models` (tables), :mod:`.sessions` (lifecycle and who may join), :mod:`.sequencer` (the
per-session sequence, written in the database), :mod:`.state` (the fold), :mod:`.events` (event
names and payload models), :mod:`.hub` (this process's writer, coalescer and ordered delivery),
:mod:`.namespace` and :mod:`.routes` (the adapters), :mod:`.render_share` (shared render
streams), :mod:`.record` (what a session leaves in the case timeline).
"""
