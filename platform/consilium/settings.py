"""The one typed configuration object.

Sources, later ones winning:
1. the defaults below,
2. a TOML file (``config/consilium.toml`` is the embedded default). Its tables are flattened:
   ``[dicom] port = 11112`` sets ``dicom_port``; ``[[institutions]]`` is a list of tables,
3. ``CONSILIUM_<FIELD>`` environment variables (``CONSILIUM_DICOM_PORT=11113``); list-valued
   fields (``CONSILIUM_INSTITUTIONS``) take JSON,
4. explicit overrides, e.g. the command line of ``consilium serve``.

Nothing else in the code base reads ``os.environ``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ENV_PREFIX = "CONSILIUM_"


class NodeKind(StrEnum):
    """What a configured DICOM peer is; decides what it may do with the archive."""

    MODALITY = "modality"  # sends images (C-STORE), queries the worklist
    PACS = "pacs"  # a hospital archive: sends, queries, is a C-MOVE destination
    WORKSTATION = "workstation"  # queries and retrieves


class DicomNode(BaseModel):
    """A DICOM application entity of an institution.

    ``host``/``port`` are needed only where the archive opens associations to it (C-MOVE
    destination, remote PACS queries).
    """

    model_config = ConfigDict(extra="forbid")

    ae_title: str = Field(min_length=1, max_length=16)
    kind: NodeKind = NodeKind.MODALITY
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    description: str = ""
    networks: list[str] = Field(
        default_factory=list,
        description="Addresses or networks (CIDR) this AE may call from; empty: any address, "
        "or only ``host`` when ``dicom.check_node_host`` is set.",
    )

    @field_validator("ae_title")
    @classmethod
    def _strip_ae(cls, value: str) -> str:
        stripped = value.strip()
        if not stripped or "\\" in stripped:
            raise ValueError(f"invalid AE title {value!r}")
        return stripped

    @field_validator("networks")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        for value in values:
            ipaddress.ip_network(value, strict=False)  # raises ValueError with the reason
        return values

    @property
    def reachable(self) -> bool:
        """True when the archive can open an association to this node."""
        return self.host is not None and self.port is not None


class FilmPrinter(BaseModel):
    """A hospital's film printer: a DICOM Basic Grayscale Print Management SCP that
    Consilium prints patients' films on (only clinicians of ``institution`` may use it)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    institution: str
    ae_title: str = Field(min_length=1, max_length=16)
    host: str
    port: int = Field(ge=1, le=65535)
    description: str = ""


class Institution(BaseModel):
    """A hospital of the region: who it is and which DICOM nodes belong to it."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str
    nodes: list[DicomNode] = Field(default_factory=list)


def token_type(value: str | None) -> str:
    """A JOSE ``typ`` as compared: lower case, without ``application/`` (RFC 7515 4.1.9);
    absent means a plain JWT."""
    text = (value or "jwt").strip().lower()
    return text.removeprefix("application/")


ROLE_NAMES = frozenset({"referring", "consultant", "head", "admin"})  # identity's Role values


class OidcProvider(BaseModel):
    """An OpenID Connect provider clinicians log in with (one per institution, or regional).

    Claims map onto Consilium's user: ``institution`` (fixed for a per-institution provider,
    otherwise read from ``institution_claim``), roles (``roles_claim``, values translated by
    ``role_map``), specialty and display name. The client secret is never in the config file:
    ``client_secret_file`` or ``client_secret_env`` names where it is; a public client (PKCE
    only) has neither.
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str
    issuer: str = Field(description="discovery at <issuer>/.well-known/openid-configuration")
    client_id: str
    client_secret_file: Path | None = None
    client_secret_env: str | None = None
    scopes: str = "openid profile email"
    institution: str | None = Field(default=None, description="fixed institution id")
    institution_claim: str = "institution"
    roles_claim: str = "roles"
    role_map: dict[str, str] = Field(
        default_factory=dict, description="provider role/group value -> consilium role"
    )
    specialty_claim: str = "specialty"
    name_claim: str = "name"
    api_audiences: list[str] = Field(
        default_factory=list,
        description="aud values accepted in bearer access tokens (API clients); a token is "
        "accepted when one of its audiences is listed. An aud string of space-separated words "
        "(Glewlwyd puts the granted scopes there) counts as each word. Empty: the client_id.",
    )
    api_token_types: list[str] = Field(
        default_factory=lambda: ["at+jwt", "jwt"],
        description="JOSE 'typ' header values accepted for bearer access tokens, compared "
        "case-insensitively without an 'application/' prefix; a token without 'typ' counts as "
        "'jwt'. RFC 9068 access tokens are 'at+jwt'. ID tokens are refused as bearer tokens "
        "whatever their type (by their nonce, at_hash, c_hash or s_hash, or Keycloak's "
        "typ=ID claim).",
    )
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256", "PS256"])
    service_clients: dict[str, str] = Field(
        default_factory=dict,
        description="OAuth client ids whose client-credentials access tokens act as machines "
        "(a PACS, a router) of the provider's institution, -> the system's name for the audit "
        "trail, e.g. {\"city-pacs\" = \"City PACS\"} (a Keycloak client with service "
        "accounts enabled). Such a principal has no role: it may store (STOW-RS), never read. "
        "Use dedicated clients, never the login client.",
    )

    @field_validator("role_map")
    @classmethod
    def _roles_exist(cls, mapping: dict[str, str]) -> dict[str, str]:
        bad = {k: v for k, v in mapping.items() if v not in ROLE_NAMES}
        if bad:
            raise ValueError(
                f"role_map maps {bad} onto no Consilium role (roles: "
                f"{', '.join(sorted(ROLE_NAMES))}); nobody could log in with those")
        return mapping

    @model_validator(mode="after")
    def _service_clients_are_not_the_login_client(self) -> OidcProvider:
        if self.client_id in self.service_clients:
            raise ValueError(f"identity provider {self.id!r}: the login client "
                             f"{self.client_id!r} cannot be a service client (people log in "
                             "through it)")
        return self

    @model_validator(mode="after")
    def _one_secret_source(self) -> OidcProvider:
        if self.client_secret_file is not None and self.client_secret_env:
            raise ValueError(f"identity provider {self.id!r}: give client_secret_file or "
                             "client_secret_env, not both")
        return self

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, values: list[str]) -> list[str]:
        bad = [a for a in values if a.lower() == "none" or a.upper().startswith("HS")]
        if bad:
            raise ValueError(f"algorithms {bad} are not allowed (asymmetric signatures only)")
        return values

    @field_validator("api_token_types")
    @classmethod
    def _token_types(cls, values: list[str]) -> list[str]:
        if not values:
            raise ValueError("api_token_types: name at least one token type (e.g. at+jwt)")
        return [token_type(v) for v in values]

    @property
    def bearer_audiences(self) -> frozenset[str]:
        return frozenset(self.api_audiences or [self.client_id])


DEV_IDP_PROVIDER_ID = "dev"
UI_LANGUAGES = ("ru", "en")  # the interface's catalogues (frontend/src/locales, *_text.py)


class DicomWebPacs(BaseModel):
    """A hospital PACS reached through DICOMweb (QIDO-RS search, WADO-RS retrieve) rather than
    DIMSE: one of the sources of the federated search, owned by ``institution``."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    institution: str = Field(description="the institution whose PACS it is (its studies are "
                             "that institution's once retrieved)")
    url: str = Field(description="the DICOMweb root, e.g. http://pacs.city.example/dicom-web")
    description: str = ""
    bearer_token_file: Path | None = Field(
        default=None, description="a file holding a bearer token sent to the PACS (never the "
        "token itself in the configuration)")
    timeout: float = Field(default=30.0, gt=0, description="seconds per request")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        text = value.strip().rstrip("/")
        if not text.startswith(("http://", "https://")):
            raise ValueError(f"DICOMweb url {value!r} must start with http:// or https://")
        return text

    def bearer_token(self) -> str | None:
        if self.bearer_token_file is None:
            return None
        return self.bearer_token_file.read_text().strip() or None


class DuplicatePolicy(StrEnum):
    """What C-STORE does with a SOP Instance UID that is already stored with other content.

    An identical resend is always a success (idempotent). ``reject`` keeps the first version and
    answers 0x0111 (Duplicate SOP Instance); ``replace`` keeps the newest and logs the old hash.
    """

    REJECT = "reject"
    REPLACE = "replace"


class Settings(BaseModel):
    """Every setting of a Consilium process, with its default."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    data_dir: Path = Field(
        default=Path("var"),
        description="Where DICOM files, the SQLite database and logs live.",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; empty means sqlite:///<data_dir>/consilium.db.",
    )
    log_level: str = Field(default="INFO", description="Python logging level.")

    http_host: str = Field(default="127.0.0.1", description="Web/API listen address.")
    http_port: int = Field(default=8000, ge=0, le=65535, description="Web/API port.")
    public_url: str = Field(default="", description="External base URL; empty: from host/port.")
    http_trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks of reverse proxies (e.g. [\"10.0.0.5\", "
        "\"10.1.0.0/16\"]) whose X-Forwarded-For and X-Forwarded-Proto are believed: the "
        "client address in the audit and the login rate limits then comes from the header. "
        "Empty (the default): the headers are ignored, from any peer, loopback included.",
    )

    dicom_ae_title: str = Field(default="CONSILIUM", min_length=1, max_length=16)
    dicom_host: str = Field(default="0.0.0.0", description="DIMSE listen address.")
    dicom_port: int = Field(default=11112, ge=0, le=65535, description="DIMSE port.")
    dicom_max_pdu: int = Field(
        default=262144,
        ge=4096,
        le=16 * 1024 * 1024,
        description="Largest PDU we accept (bytes); a peer declaring more is aborted. dcmtk sends "
        "at most 128 KiB whatever we allow.",
    )
    dicom_workers: int = Field(
        default=2,
        ge=1,
        le=64,
        description="DIMSE listener processes for parallel associations: they accept in turn "
        "on one listening socket (round-robin); 1 runs the listener inside the main process.",
    )
    dicom_accept_unknown_ae: bool = Field(
        default=False,
        description="Accept associations from AE titles not configured for any institution.",
    )
    dicom_duplicate_policy: DuplicatePolicy = DuplicatePolicy.REJECT
    dicom_network_timeout: float = Field(default=60.0, gt=0, description="Seconds of silence.")
    dicom_artim_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a new connection has to deliver its whole A-ASSOCIATE-RQ (the ARTIM "
        "timer); a connection that sends nothing, too little or something else is closed.",
    )
    dicom_max_associations: int = Field(
        default=32,
        ge=1,
        le=1000,
        description="Associations served at once by each DIMSE process; more are rejected "
        "(A-ASSOCIATE-RJ, transient: the peer may retry).",
    )
    dicom_tls_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="A second DIMSE port speaking DICOM over TLS (PS3.15 B.1; 2762 by "
        "convention); none by default, 0: any free port.",
    )
    dicom_tls_certificate: Path | None = Field(
        default=None, description="The TLS port's certificate chain (PEM)."
    )
    dicom_tls_key: Path | None = Field(
        default=None, description="The TLS port's private key (PEM, unencrypted)."
    )
    dicom_tls_ca: Path | None = Field(
        default=None,
        description="CA certificates (PEM) that sign the peers' certificates: when set, a peer "
        "must present one (mutual TLS); unset: any peer may connect over TLS.",
    )
    dicom_check_node_host: bool = Field(
        default=False,
        description="A node with a ``host`` may associate only from that host's addresses (as "
        "Orthanc's DicomCheckModalityHost); ``networks`` of a node widen that.",
    )
    dicom_fast_store: bool = Field(
        default=True,
        description="Serve storage-only associations on the lean C-STORE receive path.",
    )

    dicom_remote_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Remote PACS (C-FIND/C-MOVE SCU): seconds to connect, to be accepted, and "
        "to wait for each answer.",
    )
    dicom_remote_retrieve_timeout: float = Field(
        default=900.0,
        gt=0,
        description="Remote PACS: seconds a whole C-MOVE of one study may take before it is "
        "aborted.",
    )

    federation_deadline: float = Field(
        default=8.0,
        gt=0,
        le=120,
        description="Federated search: seconds to wait for every source (the archive and each "
        "PACS, asked in parallel); a source that has not answered by then is flagged as not "
        "answering and the others are shown.",
    )
    federation_dicomweb: list[DicomWebPacs] = Field(
        default_factory=list,
        description="Hospital PACS reached through DICOMweb (QIDO-RS/WADO-RS), beside the DIMSE "
        "ones configured as institution nodes of kind 'pacs'.",
    )
    federation_retrieve_workers: int = Field(
        default=2,
        ge=1,
        le=16,
        description="Retrieves from PACS (on demand and prefetched for consults) run at most "
        "this many at once; more wait their turn.",
    )

    media_max_mb: int = Field(
        default=4300,
        ge=1,
        description="Largest patient medium or de-identified copy (MiB of instances; 4300 fits "
        "a single-layer DVD). Larger exports are refused with 413: choose fewer studies.",
    )
    media_film_printers: list[FilmPrinter] = Field(
        default_factory=list,
        description="Film printers (DICOM Print SCPs) of the institutions, for patients' films.",
    )
    media_print_timeout: float = Field(
        default=60.0, gt=0, description="Seconds a film printer may take for each step.")

    storage_fsync: bool = Field(
        default=True, description="fsync every file and directory before acknowledging."
    )
    storage_direct_io: bool = Field(
        default=True,
        description="Write received files with O_DIRECT (with fsync on) instead of through the "
        "page cache: less CPU per instance; falls back by itself where the file system has no "
        "direct I/O.",
    )

    pixels_max_frame_pixels: int = Field(
        default=8192 * 8192,
        ge=1,
        description="Largest image frame (rows x columns) the archive accepts and decodes: "
        "instances declaring more are refused at ingest (C-STORE 0xC214, STOW-RS failure), and "
        "nothing stored earlier is decoded beyond it (rendered, thumbnails, frames, "
        "transcoding, 3D). Decoders allocate what an object declares.",
    )
    pixels_max_instance_mb: int = Field(
        default=2048,
        ge=1,
        description="Largest decoded size of one instance (rows x columns x samples x bytes per "
        "sample x frames), MiB; checked like pixels_max_frame_pixels.",
    )

    transcode_cache_mb: int = Field(
        default=256,
        ge=0,
        description="Memory for frames encoded on the way out (WADO-RS frames asked for in "
        "another transfer syntax than stored, e.g. JPEG-LS for the viewer), least recently "
        "used out first; per web process; 0 caches nothing. A 300-slice CT is about 57 MB in "
        "JPEG-LS lossless plus 8 MB of previews. Nothing stored is ever changed.",
    )
    transcode_preview_near: int = Field(
        default=32,
        ge=1,
        le=255,
        description="Largest error of a pixel in the viewer's preview stage (JPEG-LS "
        "near-lossless, 1.2.840.10008.1.2.4.81), in stored units (HU for CT); an eighth of it "
        "for 8-bit images. 32 makes a CT slice about 17 KB instead of 187 KB lossless; the "
        "viewer marks such pixels lossy until the lossless ones replace them.",
    )

    http_max_json_kb: int = Field(
        default=1024,
        ge=1,
        description="Largest JSON request body of the JSON API (KiB); larger ones get 413.",
    )
    dicomweb_stow_max_mb: int = Field(
        default=4096,
        ge=1,
        description="Largest STOW-RS request body (MiB): streamed to a temporary file under "
        "data_dir (never held in memory), parts read from there; larger bodies get 413.",
    )

    identity_dev_idp: bool = Field(
        default=False,
        description="Serve the built-in demo OpenID provider at /dev-idp (demo clinicians of two "
        "hospitals). Never in production.",
    )
    identity_providers: list[OidcProvider] = Field(default_factory=list)
    identity_session_hours: float = Field(default=12.0, gt=0, le=24 * 14)
    identity_login_attempts_per_minute: int = Field(
        default=10, ge=1, description="per client address, failed and started logins"
    )
    identity_unauthenticated_audit_per_minute: int = Field(
        default=30, ge=1,
        description="Audit events that a caller who is not logged in can cause (forged login "
        "callbacks, invalid bearer tokens, rate-limited logins), per client address and "
        "minute; beyond it one event says that the rest were not recorded. Their caller-chosen "
        "text is cut to 120 characters.",
    )
    identity_cookie_secure: bool | None = Field(
        default=None, description="Secure cookies; default: when public_url is https"
    )

    audit_syslog_host: str = Field(default="", description="DICOM audit messages via syslog UDP")
    audit_syslog_port: int = Field(default=514, ge=1, le=65535)

    consult_due_hours_emergency: float = Field(default=1.0, gt=0, description="submit -> due")
    consult_due_hours_urgent: float = Field(default=6.0, gt=0)
    consult_due_hours_routine: float = Field(default=72.0, gt=0)
    consult_grant_retention_days: float = Field(
        default=30.0, ge=0, description="studies stay shared this long after a case is closed"
    )
    consult_attachment_max_mb: float = Field(
        default=20.0, gt=0, description="largest file a party may attach to a case (MiB)"
    )

    render_workers: int = Field(
        default=1,
        ge=1,
        le=32,
        description="Render worker processes for server-side MPR and 3D (spawned with the first "
        "render request). A series always renders in the same worker, which keeps its volume.",
    )
    render_cache_mb: int = Field(
        default=1200,
        ge=64,
        description="Memory for cached volumes across all render workers (split evenly): voxels "
        "plus about 4 bytes per voxel once volume-rendered; least recently used volumes are "
        "evicted. A 512x512x300 CT costs about 150 MB, about 450 MB with its ray caster.",
    )

    live_redis_url: str = Field(
        default="",
        description="Redis for Socket.IO across several web processes (redis://host:6379/0): an "
        "event emitted by one process reaches the clients of every process, and the changes of "
        "live consilium sessions reach the participants of every process. Empty: one process.",
    )
    live_coalesce_ms: float = Field(
        default=33.0,
        ge=5.0,
        le=1000.0,
        description="Live consilium: high-frequency changes (the presenter's view, pointers) are "
        "written and broadcast about once per this interval, the latest per session and kind "
        "winning (33 ms: 30 per second; up to 3 at once, so that jitter delays nothing).",
    )
    live_session_max_hours: float = Field(
        default=12.0,
        gt=0,
        description="An invitation's grant of the case's studies lasts at most this long after "
        "the session's scheduled start, even if nobody ends the session.",
    )
    live_invitation_retention_minutes: float = Field(
        default=60.0,
        ge=0,
        description="After a session ends, its invitees may still read the case's studies (and "
        "the ended session) this long; 0 ends their access with the session.",
    )
    live_prewarm_minutes: float = Field(
        default=10.0,
        ge=0,
        description="The render workers prepare a scheduled session's volumes this long before "
        "it starts (and at once when a session opens), so that its first MPR/3D frame is quick.",
    )
    live_prewarm_series: int = Field(
        default=4,
        ge=0,
        le=32,
        description="At most this many series of a session's case are prepared (the largest "
        "first, 8 images or more); 0 prepares none.",
    )

    ui_time_zone: str = Field(
        default="Asia/Yekaterinburg",
        description="IANA time zone in which the web interface and the PDFs show instants (the "
        "region's, whatever the reader's computer is set to); stored instants stay UTC.",
    )
    ui_default_language: str = Field(
        default="ru",
        description="Interface language when neither the user's choice (the language switch) "
        "nor the browser's preferences name one we have (ru, en); also the language of the "
        "conclusion PDFs, which are archived documents and read the same for everyone.",
    )
    http_access_log: bool = Field(
        default=False,
        description="Log every HTTP request (uvicorn's access log). Off: one line per minute "
        "says how many requests were answered and how many failed.",
    )

    demo_data: bool = Field(default=False, description="Seed demo studies at start if empty.")
    demo_ct_slices: int = Field(default=120, ge=1, le=2000)

    institutions: list[Institution] = Field(default_factory=list)

    @field_validator("http_trusted_proxies")
    @classmethod
    def _proxy_addresses(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value.strip(), strict=False)
            except ValueError:
                raise ValueError(f"http.trusted_proxies: {value!r} is not an IP address or "
                                 "network") from None
        return [v.strip() for v in values]

    @field_validator("ui_time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"ui.time_zone: {value!r} is not an IANA time zone "
                             "(e.g. Asia/Yekaterinburg)") from None
        return value

    @field_validator("ui_default_language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        if value not in UI_LANGUAGES:
            raise ValueError(f"ui.default_language: {value!r} is not one of "
                             f"{', '.join(UI_LANGUAGES)}")
        return value

    @model_validator(mode="after")
    def _tls_needs_its_files(self) -> Settings:
        if self.dicom_tls_port is not None and not (self.dicom_tls_certificate
                                                    and self.dicom_tls_key):
            raise ValueError("dicom.tls_port needs dicom.tls_certificate and dicom.tls_key")
        return self

    @model_validator(mode="after")
    def _unique_ae_titles(self) -> Settings:
        seen: dict[str, str] = {}
        for inst in self.institutions:
            for node in inst.nodes:
                owner = seen.setdefault(node.ae_title, inst.id)
                if owner != inst.id:
                    raise ValueError(
                        f"AE title {node.ae_title!r} is configured for both {owner!r} and "
                        f"{inst.id!r}; an AE title must identify one institution"
                    )
        ids = [inst.id for inst in self.institutions]
        if len(ids) != len(set(ids)):
            raise ValueError("institution ids must be unique")
        web_ids = [p.id for p in self.federation_dicomweb]
        if len(web_ids) != len(set(web_ids)):
            raise ValueError("federation.dicomweb ids must be unique")
        for printer in self.media_film_printers:
            if printer.institution not in ids:
                raise ValueError(f"film printer {printer.id!r} belongs to institution "
                                 f"{printer.institution!r}, which is not configured")
        for peer in self.federation_dicomweb:
            if peer.institution not in ids:
                raise ValueError(f"federation.dicomweb {peer.id!r} belongs to institution "
                                 f"{peer.institution!r}, which is not configured")
        return self

    @model_validator(mode="after")
    def _providers_name_something(self) -> Settings:
        """A provider's mapping must name what exists: else the start succeeds and every login
        through it fails."""
        provider_ids = [p.id for p in self.identity_providers]
        if len(provider_ids) != len(set(provider_ids)):
            raise ValueError("identity provider ids must be unique")
        known = ", ".join(i.id for i in self.institutions) or "none configured"
        for provider in self.identity_providers:
            if provider.institution is not None and self.institution(provider.institution) is None:
                raise ValueError(
                    f"identity provider {provider.id!r} maps its users onto institution "
                    f"{provider.institution!r}, which is not configured (known: {known})")
        return self

    # -- derived values -----------------------------------------------------------------------

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'consilium.db').resolve()}"

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "dicom"

    @property
    def effective_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "localhost" if self.http_host in ("0.0.0.0", "127.0.0.1", "::") else self.http_host
        return f"http://{host}:{self.http_port}"

    def node_by_ae(self, ae_title: str) -> tuple[Institution, DicomNode] | None:
        """The institution and node configured for a calling/destination AE title."""
        wanted = ae_title.strip()
        for inst in self.institutions:
            for node in inst.nodes:
                if node.ae_title == wanted:
                    return inst, node
        return None

    def institution(self, institution_id: str) -> Institution | None:
        return next((i for i in self.institutions if i.id == institution_id), None)

    @property
    def effective_identity_providers(self) -> list[OidcProvider]:
        """The configured providers, plus the built-in demo provider when it is enabled; the
        demo one is reached over HTTP like any other (discovery, JWKS), nothing special-cased."""
        providers = list(self.identity_providers)
        if self.identity_dev_idp and not any(p.id == DEV_IDP_PROVIDER_ID for p in providers):
            providers.append(
                OidcProvider(
                    id=DEV_IDP_PROVIDER_ID,
                    name="Consilium demo identity provider",
                    issuer=f"{self.effective_public_url}/dev-idp",
                    client_id="consilium",
                )
            )
        return providers

    def provider(self, provider_id: str) -> OidcProvider | None:
        return next((p for p in self.effective_identity_providers if p.id == provider_id), None)

    def client_secret(self, provider: OidcProvider,
                      environ: Mapping[str, str] | None = None) -> str | None:
        """The provider's client secret from its file or environment variable (None: a public
        client). ValueError says which provider's secret is missing and where it was looked for."""
        if provider.client_secret_file is not None:
            path = provider.client_secret_file
            try:
                value = path.read_text().strip()
            except OSError as exc:
                raise ValueError(f"identity provider {provider.id!r}: client_secret_file {path} "
                                 f"cannot be read ({exc.strerror or exc})") from exc
            if not value:
                raise ValueError(f"identity provider {provider.id!r}: client_secret_file {path} "
                                 "is empty")
            return value
        if provider.client_secret_env:
            found = (os.environ if environ is None else environ).get(provider.client_secret_env)
            if not found:
                raise ValueError(f"identity provider {provider.id!r}: the environment variable "
                                 f"{provider.client_secret_env} (its client_secret_env) is not set")
            return found
        return None

    def check_client_secrets(self, environ: Mapping[str, str] | None = None) -> None:
        """Every configured client secret can be read now: checked when the web service starts,
        so that a missing secret stops the start instead of failing the first login."""
        problems = []
        for provider in self.effective_identity_providers:
            try:
                self.client_secret(provider, environ)
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def cookies_secure(self) -> bool:
        if self.identity_cookie_secure is not None:
            return self.identity_cookie_secure
        return self.effective_public_url.startswith("https://")


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}_"))
        else:
            flat[name] = value
    return flat


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, field in Settings.model_fields.items():
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is None:
            continue
        annotation = str(field.annotation)
        values[name] = json.loads(raw) if annotation.startswith("list") else raw
    return values


def load_settings(
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings from defaults, a TOML file, the environment and overrides.

    ``config_file`` defaults to ``$CONSILIUM_CONFIG`` if set. Raises ``ValueError`` with every
    problem listed when the result is invalid.
    """
    env = os.environ if environ is None else environ
    if config_file is None and env.get(ENV_PREFIX + "CONFIG"):
        config_file = Path(env[ENV_PREFIX + "CONFIG"])
    values: dict[str, Any] = {}
    if config_file is not None:
        with config_file.open("rb") as fh:
            values.update(_flatten(tomllib.load(fh)))
    values.update(_from_environment(env))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return Settings.model_validate(values)
