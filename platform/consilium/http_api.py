"""What the JSON API's thin adapters share, in one import: the signed-in caller, answered as
JSON and named as an audit actor (:mod:`consilium.identity.web`), and request bodies read
within a size limit and validated against their declared model once, answers from their public
model (:mod:`consilium.http_json`).

It defines nothing: the two halves live below the domains that use them (identity's own adapters
import them from there). Errors are raised, never rendered here: :mod:`consilium.edge` answers
every :class:`~consilium.errors.DomainError` (and records a "not found")."""

from __future__ import annotations

from consilium.http_json import describe, json_response, read_json, read_limited, read_model
from consilium.identity.web import json_endpoint, signed_in, web_actor

__all__ = [
    "describe",
    "json_endpoint",
    "json_response",
    "read_json",
    "read_limited",
    "read_model",
    "signed_in",
    "web_actor",
]
