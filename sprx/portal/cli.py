"""`sprx portal`: serve the upload portal, and manage the services that may use it.

    sprx portal [--host H] [--port P]        serve the portal (settings: SPRX_PORTAL_*)
    sprx portal add-service ID "Name"        create a service; its credential is printed once
    sprx portal new-key ID                   revoke the service's credential and print a new one
    sprx portal revoke-service ID            stop a service's access at once (its sessions end)
    sprx portal list-services                every service, its state and upload count
    sprx portal add-staff ID "Name"          create an ICS staff account (reads /report; uploads nothing)
    sprx portal list-staff                   every staff account and its state
    (new-key ID and revoke-service ID work for staff accounts too; revoke-staff ID is the same as revoke-service)
"""

from __future__ import annotations

import argparse
import logging
import sys

from sprx.permissions import private_umask
from sprx.portal.store import STAFF_ROLE, PortalStore, ServiceError
from sprx.settings import get_portal_settings, get_settings


def _store() -> PortalStore:
    """The portal's store under $SPRX_HOME/portal/."""
    return PortalStore(get_settings().portal_dir)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `sprx portal` and its actions on the main command's subparsers."""
    parser = subparsers.add_parser(
        "portal",
        help="the upload portal: a web page where VCSE services upload attendance sheets and see what is wrong",
        description=(
            "Serve the upload portal (HTML pages and a JSON API), or manage the services that may sign in to it. "
            "Accepted sheets land in $SPRX_HOME/landing/vcse/<service>/; the portal's own state is in "
            "$SPRX_HOME/portal/. Staff accounts (add-staff) read the published report at /report. Settings: "
            "SPRX_PORTAL_HOST, SPRX_PORTAL_PORT, SPRX_PORTAL_MAX_UPLOAD_BYTES, SPRX_PORTAL_SESSION_MINUTES, "
            "SPRX_PORTAL_INGEST_ON_UPLOAD, SPRX_PORTAL_RATE_LIMIT, SPRX_PORTAL_SIGN_IN_RATE_LIMIT, "
            "SPRX_PORTAL_UPLOAD_RATE_LIMIT, SPRX_PORTAL_QUOTA_BYTES, SPRX_PORTAL_REQUEST_TIMEOUT_SECONDS, "
            "SPRX_PORTAL_KEEP_ALIVE_SECONDS, SPRX_PORTAL_MAX_CONNECTIONS, SPRX_PORTAL_TRUSTED_PROXIES, "
            "SPRX_PORTAL_HSTS, SPRX_PORTAL_CONTACT. See docs/services.md."
        ),
    )
    parser.add_argument("--host", help="address to listen on (default SPRX_PORTAL_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default SPRX_PORTAL_PORT or 8750)")
    parser.set_defaults(handler=cmd_serve)
    actions = parser.add_subparsers(title="actions (without one, the portal is served)", metavar="[ACTION]")
    add = actions.add_parser("add-service", help="create a service and print its credential once",
                             description="Create a service that may upload sheets, and print its credential. "
                             "Only a salted hash is kept: the credential cannot be shown again (use new-key).")
    add.add_argument("service_id", metavar="ID", help="the service's id: its folder under landing/vcse/ "
                     "(lower-case letters, digits and hyphens)")
    add.add_argument("name", metavar="NAME", help="the service's name as its staff know it")
    add.set_defaults(handler=cmd_add_service)
    new_key = actions.add_parser("new-key", help="revoke a service's credential and print a new one",
                                 description="Revoke a service's credential (its sessions end) and print a new one; "
                                 "also restores a revoked service.")
    new_key.add_argument("service_id", metavar="ID")
    new_key.set_defaults(handler=cmd_new_key)
    revoke = actions.add_parser("revoke-service", help="stop a service's access at once",
                                description="Revoke the service's credential and end its sessions; its uploads stay.")
    revoke.add_argument("service_id", metavar="ID")
    revoke.set_defaults(handler=cmd_revoke_service)
    listing = actions.add_parser("list-services", help="list the services, their state and upload counts")
    listing.set_defaults(handler=cmd_list_services)
    staff = actions.add_parser("add-staff", help="create an ICS staff account and print its credential once",
                               description="Create a staff account: it signs in like a service but sees only the "
                               "published report at /report (never a service's uploads), and cannot upload. Its "
                               "credential is printed once.")
    staff.add_argument("service_id", metavar="ID", help="the account's id (lower-case letters, digits and hyphens; "
                       "not the id of a service)")
    staff.add_argument("name", metavar="NAME", help="the person's or team's name")
    staff.set_defaults(handler=cmd_add_staff)
    revoke_staff = actions.add_parser("revoke-staff", help="stop a staff account's access at once",
                                      description="Revoke the staff account's credential and end its sessions.")
    revoke_staff.add_argument("service_id", metavar="ID")
    revoke_staff.set_defaults(handler=cmd_revoke_service)
    list_staff = actions.add_parser("list-staff", help="list the staff accounts and their state")
    list_staff.set_defaults(handler=cmd_list_staff)


def _print_credential(service_id: str, credential: str) -> None:
    """Print a new credential: the only time it is ever shown."""
    print(f"Credential for {service_id} (shown once; give it to the service by a safe route):")
    print(credential)


def cmd_add_service(args: argparse.Namespace) -> int:
    """Create a service and print its credential."""
    try:
        credential = _store().add_service(args.service_id, args.name)
    except ServiceError as error:
        print(f"sprx portal: {error}", file=sys.stderr)
        return 2
    _print_credential(args.service_id, credential)
    return 0


def cmd_add_staff(args: argparse.Namespace) -> int:
    """Create a staff account and print its credential."""
    try:
        credential = _store().add_service(args.service_id, args.name, role=STAFF_ROLE)
    except ServiceError as error:
        print(f"sprx portal: {error}", file=sys.stderr)
        return 2
    print(f"Staff account {args.service_id}: it signs in at the portal's address and sees the published report at "
          "/report.")
    _print_credential(args.service_id, credential)
    return 0


def cmd_list_staff(args: argparse.Namespace) -> int:
    """List the staff accounts."""
    accounts = _store().services(role=STAFF_ROLE)
    if not accounts:
        print("No staff accounts yet: add one with sprx portal add-staff ID \"Name\"")
    for account in accounts:
        state = f"revoked {account['revoked_at'][:10]}" if account["revoked_at"] else "active"
        print(f"{account['service_id']}\tstaff\t{state}\t{account['name']}")
    return 0


def cmd_new_key(args: argparse.Namespace) -> int:
    """Replace a service's credential."""
    try:
        credential = _store().new_credential(args.service_id)
    except ServiceError as error:
        print(f"sprx portal: {error}", file=sys.stderr)
        return 2
    _print_credential(args.service_id, credential)
    return 0


def cmd_revoke_service(args: argparse.Namespace) -> int:
    """Revoke a service."""
    try:
        _store().revoke_service(args.service_id)
    except ServiceError as error:
        print(f"sprx portal: {error}", file=sys.stderr)
        return 2
    print(f"Revoked {args.service_id}: its credential no longer works and its sessions have ended.")
    return 0


def cmd_list_services(args: argparse.Namespace) -> int:
    """List the services."""
    services = _store().services()
    if not services:
        print("No services yet: add one with sprx portal add-service ID \"Name\"")
    for service in services:
        state = f"revoked {service['revoked_at'][:10]}" if service["revoked_at"] else "active"
        print(f"{service['service_id']}\t{state}\t{service['uploads']} upload(s)\t{service['name']}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the portal until stopped."""
    from sprx.portal.app import create_app
    from sprx.portal.server import build_server

    try:
        settings = get_portal_settings()
    except ValueError as error:
        print(f"sprx portal: {error}", file=sys.stderr)
        return 2
    host, port = args.host or settings.host, args.port or settings.port
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    print(f"Upload portal on http://{host}:{port}/ (stop with Ctrl+C)", file=sys.stderr)
    with private_umask():  # every file the portal makes (sheets, database, landed copies) is owner-only
        build_server(create_app(), settings, host, port).run()
    return 0
