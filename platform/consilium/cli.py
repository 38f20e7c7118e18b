"""The ``consilium`` command: serve, dicom, import, fsck, migrate, seed-demo, generate-ct."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from pathlib import Path
from typing import Any

from consilium.settings import Settings, load_settings

log = logging.getLogger("consilium")


def _settings_from(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        "data_dir": getattr(args, "data_dir", None),
        "http_port": getattr(args, "http_port", None),
        "http_host": getattr(args, "http_host", None),
        "dicom_port": getattr(args, "dicom_port", None),
        "dicom_ae_title": getattr(args, "ae_title", None),
        "dicom_workers": getattr(args, "dicom_workers", None),
    }
    if getattr(args, "no_demo", False):
        overrides["demo_data"] = False
    try:
        return load_settings(args.config, overrides)
    except (ValueError, OSError) as exc:
        print(f"consilium: invalid configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def _check_web_start(settings: Settings) -> None:
    """What only the web service needs and the settings alone cannot tell: readable secrets."""
    try:
        settings.check_client_secrets()
    except ValueError as exc:
        print(f"consilium: invalid configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML file (default: $CONSILIUM_CONFIG)")
    parser.add_argument("--data-dir", type=Path, help="folder for files and the SQLite database")


def _add_listen(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dicom-port", type=int, help="DIMSE port")
    parser.add_argument("--ae-title", help="the archive's AE title")
    parser.add_argument("--dicom-workers", type=int, help="DIMSE listener processes")



DICOM_WORKER_START = 2.5  # seconds a spawned DIMSE worker may take to listen, at most


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio
    import time

    import uvicorn

    from consilium.app import create_app
    from consilium.request_log import RequestSummary
    from consilium.service import DicomService, configure_logging, open_runtime

    settings = _settings_from(args)
    _check_web_start(settings)
    configure_logging(settings)
    runtime = open_runtime(settings)
    if settings.demo_data:
        from consilium.demo.seed import seed_demo

        seed_demo(runtime.settings, runtime.store, log=lambda msg: print(msg, flush=True))
    dicom = DicomService(runtime)
    dicom.start()
    dicom_started = time.monotonic()
    app = create_app(runtime)
    if not settings.http_access_log:
        app = RequestSummary(app)  # a line a minute instead of one per frame request

    class Server(uvicorn.Server):
        """Prints the box of addresses and logins once it listens: the last thing at start."""

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            # spawned DIMSE workers take about 1.5 s to import and say that they listen
            # (measured here, on 2 busy cores); the box waits for them that long at most, so
            # that their start-up lines come before it
            if dicom.processes:
                await asyncio.sleep(max(0.0, DICOM_WORKER_START - (time.monotonic()
                                                                   - dicom_started)))
            if self.started:
                _print_banner(settings)

    # X-Forwarded-For only from configured proxies: uvicorn believes loopback by default, and
    # then anyone who reaches the port locally chooses the address audited and rate-limited
    config = uvicorn.Config(
        app, host=settings.http_host, port=settings.http_port,
        log_level=settings.log_level.lower(), lifespan="on",  # the app's start and stop
        access_log=settings.http_access_log,
        proxy_headers=bool(settings.http_trusted_proxies),
        forwarded_allow_ips=settings.http_trusted_proxies or [],
    )
    # Everything built so far (modules, the app, the DICOM dictionaries) lives as long as the
    # process: out of the collector's sight, a full collection walks only what came after.
    # Measured with 100 live participants: full collections paused the event loop for
    # 150-590 ms before.
    gc.collect()
    gc.freeze()
    try:
        Server(config).run()
    finally:
        dicom.stop()
        runtime.close()
    return 0


def cmd_dicom(args: argparse.Namespace) -> int:
    """Only the DIMSE side (scale-out: several such processes beside the web processes)."""
    from consilium.processes import wait_for_termination
    from consilium.service import DicomService, configure_logging, open_runtime

    settings = _settings_from(args)
    configure_logging(settings)
    runtime = open_runtime(settings)
    dicom = DicomService(runtime)
    dicom.start()
    if dicom.tls_port is not None:
        print(f"DICOM TLS: AE {settings.dicom_ae_title} on port {dicom.tls_port}", flush=True)
    print(f"DICOM: AE {settings.dicom_ae_title} on port {dicom.port}", flush=True)
    wait_for_termination()
    dicom.stop()
    runtime.close()
    return 0


def _print_banner(settings: Settings) -> None:
    host = "localhost" if settings.dicom_host in ("0.0.0.0", "::") else settings.dicom_host
    login = (
        "    Log in: click 'Log in', choose the demo provider, user petrov (City hospital) or\n"
        "            kuznetsova (Regional center), password demo; all demo users: README\n"
        if settings.identity_dev_idp
        else "    Log in: through your institution's identity provider\n"
    )
    print(
        "\n  Consilium is running\n"
        f"    Web:    {settings.effective_public_url}/   viewer: "
        f"{settings.effective_public_url}/viewer\n"
        f"{login}"
        f"    DICOM:  AE title {settings.dicom_ae_title}  host {host}  port {settings.dicom_port}\n"
        f"    Data:   {settings.data_dir.resolve()}\n"
        "  Send a study:  storescu -aec "
        f"{settings.dicom_ae_title} -aet CITY_CT1 {host} {settings.dicom_port} FILES...\n"
        "  Find it:       findscu -S -k QueryRetrieveLevel=STUDY -k PatientName='*' "
        f"-aec {settings.dicom_ae_title} -aet FINDSCU {host} {settings.dicom_port}\n",
        flush=True,
    )


def cmd_import(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from consilium.archive.importer import import_files, iter_files
    from consilium.service import configure_logging, open_runtime

    settings = _settings_from(args)
    configure_logging(settings)
    if settings.institution(args.institution) is None:
        known = ", ".join(i.id for i in settings.institutions) or "none configured"
        print(f"unknown institution {args.institution!r} (known: {known})", file=sys.stderr)
        return 2
    runtime = open_runtime(settings)
    try:
        files = list(iter_files(args.paths))
    except FileNotFoundError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    with Progress(
        TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[s]}"),
        disable=args.quiet,
    ) as progress:
        task = progress.add_task("import", total=len(files), s="")

        def advance(path: Path, result: Any) -> None:
            progress.update(task, advance=1, s=path.name[-40:])

        summary = import_files(runtime.store, files, args.institution, advance)
    print(f"stored {summary.stored}, duplicate {summary.duplicate}, "
          f"refused {len(summary.refused)} (of {summary.total} files)")
    for path, reason in summary.refused:
        print(f"  refused {path}: {reason}")
    return 0 if not summary.refused or args.allow_refused else 1


def cmd_fsck(args: argparse.Namespace) -> int:
    from consilium.archive.recovery import fsck
    from consilium.service import configure_logging, open_runtime

    settings = _settings_from(args)
    configure_logging(settings)
    runtime = open_runtime(settings)
    def owner_of_ae(ae_title: str) -> str | None:
        found = settings.node_by_ae(ae_title)
        return found[0].id if found else None

    report = fsck(runtime.store, verify_hashes=not args.quick, repair=args.repair,
                  owner_of_ae=owner_of_ae)
    print(f"indexed {report.indexed}, files {report.files}, missing {len(report.missing_files)}, "
          f"corrupt {len(report.corrupt_files)}, orphan {len(report.orphan_files)}, "
          f"repaired {report.repaired}")
    for label, items in (("missing", report.missing_files), ("corrupt", report.corrupt_files),
                         ("orphan", report.orphan_files)):
        for item in items:
            print(f"  {label} {item}")
    return 0 if report.consistent else 1


def cmd_migrate(args: argparse.Namespace) -> int:
    from consilium.service import configure_logging, open_runtime

    settings = _settings_from(args)
    configure_logging(settings)
    open_runtime(settings)
    print("database is at the newest migration")
    return 0


def cmd_seed_demo(args: argparse.Namespace) -> int:
    from consilium.demo.seed import seed_demo
    from consilium.service import configure_logging, open_runtime

    settings = _settings_from(args)
    configure_logging(settings)
    runtime = open_runtime(settings)
    seed_demo(settings, runtime.store, log=print, force=True, verbose=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="consilium", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="web, API and DICOM archive")
    _add_common(serve)
    _add_listen(serve)
    serve.add_argument("--http-port", type=int, help="web/API port")
    serve.add_argument("--http-host", help="web/API listen address")
    serve.add_argument("--no-demo", action="store_true", help="do not seed demo data")
    serve.set_defaults(func=cmd_serve)

    dicom = sub.add_parser("dicom", help="only the DICOM listener")
    _add_common(dicom)
    _add_listen(dicom)
    dicom.set_defaults(func=cmd_dicom)

    imp = sub.add_parser("import", help="import DICOM files and folders (recursive)")
    _add_common(imp)
    imp.add_argument("paths", nargs="+", type=Path)
    imp.add_argument("--institution", required=True, help="owning institution id")
    imp.add_argument("--quiet", action="store_true", help="no progress bar")
    imp.add_argument("--allow-refused", action="store_true", help="exit 0 even if some refused")
    imp.set_defaults(func=cmd_import)

    check = sub.add_parser("fsck", help="check that index and files agree")
    _add_common(check)
    check.add_argument("--quick", action="store_true", help="skip hash verification")
    check.add_argument("--repair", action="store_true", help="index orphan files")
    check.set_defaults(func=cmd_fsck)

    mig = sub.add_parser("migrate", help="apply database migrations")
    _add_common(mig)
    mig.set_defaults(func=cmd_migrate)

    seed = sub.add_parser("seed-demo", help="add the demo studies of two hospitals")
    _add_common(seed)
    seed.set_defaults(func=cmd_seed_demo)
    return parser


DATA_UMASK = 0o027  # files 0640, folders 0750: the service's group may read, others nothing


def main(argv: list[str] | None = None) -> int:
    # Patient data, the database (SQLite and its WAL) and logs are created by many libraries
    # with their default mode (0644: readable by every local user); the umask narrows them all,
    # in this process and in the workers it starts. Key files are 0600 on their own.
    os.umask(DATA_UMASK)
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
