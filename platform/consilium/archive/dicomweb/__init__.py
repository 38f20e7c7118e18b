"""DICOMweb (PS3.18) under ``/dicom-web``: QIDO-RS search, WADO-RS retrieve (instances,
metadata, frames, bulk data, rendered images, thumbnails) and STOW-RS store.

Thin adapters: matching lives in :mod:`consilium.archive.query`, the JSON model in
:mod:`consilium.archive.dicomjson`, instance metadata in :mod:`consilium.archive.metadata`,
multipart framing in :mod:`consilium.archive.multipart`, pixels in
:mod:`consilium.archive.rendered`, and storing in the one ingest function. Every read goes
through the archive's gate (:mod:`consilium.archive.access`): the policy, a study the reader
may not read answered exactly like one that does not exist (404), and one audit event.

Errors are the domain's (:mod:`consilium.errors`: 400, 401 with ``WWW-Authenticate: Bearer``,
404, 406, 413, 415, ...), answered by the application's one edge (:mod:`consilium.edge`) as
``{"error": reason}``; an unexpected exception is logged there and answered 500, never dropped.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from consilium.archive.context import ArchiveContext
from consilium.archive.dicomweb.base import BASE_PATH
from consilium.archive.dicomweb.qido import Qido
from consilium.archive.dicomweb.stow import Stow
from consilium.archive.dicomweb.wado import Wado

__all__ = ["BASE_PATH", "DicomWeb", "dicomweb_routes"]


class DicomWeb(Qido, Wado, Stow):
    """The DICOMweb routes over one archive context."""

    def routes(self) -> list[BaseRoute]:
        study = "/studies/{study}"
        series = study + "/series/{series}"
        instance = series + "/instances/{instance}"
        frames = instance + "/frames/{frames}"
        return [
            Route("/studies", self.search_studies, methods=["GET"]),
            Route("/studies", self.store_instances, methods=["POST"]),
            Route("/series", self.search_series, methods=["GET"]),
            Route("/instances", self.search_instances, methods=["GET"]),
            Route(study, self.retrieve, methods=["GET"]),
            Route(study, self.store_instances, methods=["POST"]),
            Route(study + "/metadata", self.metadata_of, methods=["GET"]),
            Route(study + "/series", self.search_series, methods=["GET"]),
            Route(study + "/instances", self.search_instances, methods=["GET"]),
            Route(study + "/thumbnail", self.thumbnail, methods=["GET"]),
            Route(series, self.retrieve, methods=["GET"]),
            Route(series + "/metadata", self.metadata_of, methods=["GET"]),
            Route(series + "/instances", self.search_instances, methods=["GET"]),
            Route(series + "/thumbnail", self.thumbnail, methods=["GET"]),
            Route(instance, self.retrieve, methods=["GET"]),
            Route(instance + "/metadata", self.metadata_of, methods=["GET"]),
            Route(instance + "/rendered", self.rendered, methods=["GET"]),
            Route(instance + "/thumbnail", self.thumbnail, methods=["GET"]),
            Route(instance + "/bulkdata/{path:path}", self.bulkdata, methods=["GET"]),
            Route(frames, self.frames, methods=["GET"]),
            Route(frames + "/rendered", self.rendered, methods=["GET"]),
            Route(frames + "/thumbnail", self.thumbnail, methods=["GET"]),
        ]


def dicomweb_routes(ctx: ArchiveContext) -> list[BaseRoute]:
    """The routes to mount under :data:`BASE_PATH`."""
    return DicomWeb(ctx).routes()
