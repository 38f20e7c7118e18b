"""Consilium: a regional teleconsultation platform over a shared DICOM archive."""

__version__ = "0.1.0"
