"""Server-side reconstruction (MPR, MIP, volume rendering).

A library with no web or database: arrays and parameters in, frames out. The service runs it in
worker processes. It never imports ``consilium``. Filled in by the 3D issue.
"""
