"""Consult cases: requests for an opinion on studies, their state machine, messages,
attachments, conclusions (PDF, and DICOM objects back into the archive). Every function takes a
:class:`consilium.consult.context.ConsultContext`."""
