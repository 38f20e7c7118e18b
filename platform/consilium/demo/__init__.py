"""Demo data of the embedded default: seeds the archive with synthetic CT studies of two
hospitals (:mod:`consilium.synthetic`) and pydicom's test files, and registers the dev IdP's
clinicians."""
