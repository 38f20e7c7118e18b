"""Server-side MPR and 3-D rendering as a service: the rendering library run in
worker processes, over HTTP and Socket.IO, under the images' access policy.

Modules:

- :mod:`.protocol` -- picklable job specs and results, and the parsers of request parameters
  shared by HTTP and Socket.IO (no VTK in the web process).
- :mod:`.workers` -- the pool of worker processes: sticky routing by series, crash detection
  and restart.
- :mod:`.worker_process` -- inside a worker: the jobs rendered from its cached volumes.
- :mod:`.volume_cache` -- the volumes a worker keeps warm, with a memory bound and LRU
  eviction, and what each keeps beside its voxels (pipelines, interactive frame size, preview).
- :mod:`.bridge` -- the async API over the workers; the event loop never blocks on rendering.
- :mod:`.access` -- series -> study -> policy (404 when not readable), stored files, audit.
- :mod:`.routes` -- the HTTP API under ``/api/render`` (documented there).
- :mod:`.events` -- the Socket.IO stream for interactive use (documented there).
- :mod:`.service` -- the one bridge and access checker of a process.

Kept import-light: the worker processes import this package.
"""
