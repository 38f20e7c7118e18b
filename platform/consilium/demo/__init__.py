"""Demo data: synthetic DICOM studies for demos, tests and benchmarks."""
