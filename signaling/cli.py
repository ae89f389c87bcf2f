"""The `dragoman` command: serve an event, check a program, invite staff (and revoke their
links), list registrations and recordings.

Every command reads the same settings (`DRAGOMAN_*` environment variables, the
flags overriding them) and the same data directory, so links printed by
`invite` are signed with the secret `serve` verifies them with.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import gc
import json
import logging
import secrets
import shlex
import signal
import ssl
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from signaling.data_files import private_directory, private_file
from signaling.i18n import SUPPORTED_LANGUAGES
from signaling.invitations import (
    AlreadyRevoked,
    Invitation,
    NoSuchInvitation,
    new_invitation_id,
    staff_link_ttl,
)
from signaling.letters import registration_letter, staff_letter, ui_language
from signaling.logs import configure_logging
from signaling.mail import Mailer, MailError
from signaling.program import Event, ProgramError, UnknownBooth, UnknownSpeaker, load_program
from signaling.registration import Registration, normalise_email
from signaling.secret import SecretError, load_or_create_secret
from signaling.settings import Settings, SettingsError, default_event_file, load_settings
from signaling.store import StoreError, open_store
from signaling.tls import TlsError, server_ssl_context
from signaling.tokens import Role, TokenSigner

# Imported where needed, not here: the HTTP application (aiohttp.web, signaling.http_api)
# and the recordings (signaling.recordings, which reaches the media stack: aiortc, PyAV)
# take seconds to import, which every command (`invite`, `revoke`, `--help` ...) would
# otherwise wait for.
if TYPE_CHECKING:
    from aiohttp import web

EXIT_OK = 0
EXIT_PROBLEM = 1

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8080"
ROLE_PAGES = {Role.MODERATOR: "studio", Role.INTERPRETER: "booth", Role.SPEAKER: "stage"}
CSV_COLUMNS = ("id", "name", "email", "language", "created_at")
# A spreadsheet runs a cell starting with one of these as a formula: a name typed by a
# stranger must not become one when the organizer opens the export.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class CommandError(Exception):
    """A problem the person running the command can fix; printed as it is, exit 1."""


# --- settings and program shared by every command ------------------------------------------


def _add_settings_flags(parser: argparse.ArgumentParser, *, event: bool = True) -> None:
    group = parser.add_argument_group("settings (override the DRAGOMAN_* environment)")
    group.add_argument(
        "--data-dir", type=Path, help="data directory: secret, SQLite store (default: data)"
    )
    if event:
        group.add_argument(
            "--event", type=Path, help="event program file (default: the seed conference)"
        )
    group.add_argument("--redis-url", help="keep state in Redis (needed for several nodes)")
    group.add_argument("--public-url", help="base URL of the links (default: http://HOST:PORT)")


def _settings(args: argparse.Namespace, **extra: object) -> Settings:
    try:
        return load_settings(
            data_dir=args.data_dir,
            event_file=getattr(args, "event", None),
            redis_url=args.redis_url,
            public_url=args.public_url,
            **extra,
        )
    except SettingsError as exc:
        raise CommandError(str(exc)) from None


def _program(settings: Settings) -> Event:
    try:
        return load_program(settings.event_file)
    except ProgramError as exc:
        raise CommandError(str(exc)) from None


def _signer(settings: Settings) -> TokenSigner:
    try:
        return TokenSigner(load_or_create_secret(settings))
    except SecretError as exc:
        raise CommandError(str(exc)) from None


def _title(event: Event) -> str:
    return event.title.get("en")


# --- serve ------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    settings = _settings(
        args,
        host=args.host,
        port=args.port,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        rtc_ports=args.rtc_ports,
        workers=args.workers,
    )
    configure_logging(settings.log_format, repeat_interval_s=settings.log_repeat_interval_s)
    try:
        ssl_context = server_ssl_context(settings)
    except TlsError as exc:
        raise CommandError(str(exc)) from None
    event = _program(settings)
    _signer(settings)  # a broken secret file is reported before anything starts
    if args.worker_index is not None and args.handoff is not None:
        return _serve_as_worker(args, settings, event, ssl_context)
    if settings.workers > 1:
        # The supervisor never loads the application (media stack included): its
        # workers do.
        _store_ready(settings)
        return asyncio.run(_supervise(settings, event))
    # Imported here: the application pulls in the media stack, which the other
    # commands do not need and would wait for.
    from signaling.app import create_app

    app = create_app(settings, event=event)
    return asyncio.run(_run_server(app, settings, event, ssl_context))


def _store_ready(settings: Settings) -> None:
    """Open the store once before the workers do (it creates its files and schema)."""

    async def open_and_close() -> None:
        store = open_store(settings)
        try:
            await store.open()
        finally:
            await store.close()

    try:
        asyncio.run(open_and_close())
    except StoreError as exc:
        raise CommandError(f"cannot open the store: {exc}") from None


async def _supervise(settings: Settings, event: Event) -> int:
    from signaling.workers import Supervisor

    worker_args = [
        "--host", settings.host,
        "--port", str(settings.port),
        "--data-dir", str(settings.data_dir),
        "--event", str(settings.event_file),
        "--public-url", str(settings.public_url),
    ]  # fmt: skip
    if settings.redis_url:
        worker_args += ["--redis-url", settings.redis_url]
    if settings.tls_cert and settings.tls_key:
        worker_args += ["--tls-cert", str(settings.tls_cert), "--tls-key", str(settings.tls_key)]
    try:
        supervisor = Supervisor(
            settings.host,
            settings.port,
            settings.workers,
            worker_args=worker_args,
            rtc_ports=settings.rtc_ports,
            use_hub=not settings.redis_url,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    try:
        try:
            await supervisor.start()
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}; "
                "choose another port with --port"
            ) from None
        except TimeoutError:
            raise CommandError("the workers did not start; their messages above say why") from None
        stop = _stop_on_signals()
        print(f"{settings.workers} workers, one event.", flush=True)
        _print_welcome(settings, event)
        await stop.wait()
        print("Stopping.", flush=True)
    finally:
        await supervisor.stop()
    return EXIT_OK


def _serve_as_worker(
    args: argparse.Namespace, settings: Settings, event: Event, ssl_context: ssl.SSLContext | None
) -> int:
    import functools
    import os

    from signaling.app import DEFAULT_EXTENSIONS, create_app
    from signaling.live.hub import HubBus
    from signaling.websocket import install_live

    node = f"worker-{args.worker_index}-{os.getpid()}"
    extensions = list(DEFAULT_EXTENSIONS)
    if args.hub is not None:
        extensions[extensions.index(install_live)] = functools.partial(
            install_live, bus=HubBus(args.hub, node=node)
        )
    app = create_app(settings, event=event, extensions=extensions)
    return asyncio.run(_run_worker(app, args.handoff, args.worker_index, ssl_context))


async def _started_runner(app: web.Application) -> web.AppRunner:
    """The application set up (store open, live service started), or a `CommandError`
    that says why not; the same for a node alone and for a worker."""
    from signaling.app import make_runner
    from streamer.aiortc_internals import AiortcIncompatible

    runner = make_runner(app)
    try:
        await runner.setup()
    except StoreError as exc:
        await runner.cleanup()
        raise CommandError(f"cannot open the store: {exc}") from None
    except AiortcIncompatible as exc:
        await runner.cleanup()
        raise CommandError(f"the installed WebRTC libraries cannot be used: {exc}") from None
    # What the node holds from its start to its end (modules, classes, the program, the
    # application: some 100,000 objects) leaves the collector's sight, so that every full
    # collection, the interpreter's and those freeing departed peers
    # (streamer/departed_peers.py), walks only what comes and goes with clients.
    gc.collect()
    gc.freeze()
    return runner


def _stop_on_signals() -> asyncio.Event:
    """Set when the process is asked to stop (Ctrl+C, SIGTERM)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def _run_worker(
    app: web.Application, handoff_path: Path, index: int, ssl_context: ssl.SSLContext | None
) -> int:
    from signaling.websocket import LIVE_KEY
    from signaling.workers import LOAD_EVERY_S, Handoff

    runner = await _started_runner(app)
    loop = asyncio.get_running_loop()
    stop = _stop_on_signals()
    handoff = Handoff(handoff_path, index)
    connections: set[asyncio.Task[object]] = set()
    live = app[LIVE_KEY]
    server = runner.server
    assert server is not None

    def take_connections() -> None:
        handed = handoff.receive()
        if handed is None:
            stop.set()  # the supervisor is gone: so is this worker
            return
        for sock in handed:
            sock.setblocking(False)
            task = loop.create_task(loop.connect_accepted_socket(server, sock, ssl=ssl_context))
            connections.add(task)
            task.add_done_callback(connections.discard)

    loop.add_reader(handoff.channel.fileno(), take_connections)
    try:
        while not stop.is_set():
            handoff.report(len(live.clients))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), LOAD_EVERY_S)
    finally:
        loop.remove_reader(handoff.channel.fileno())
        handoff.close()
        await runner.cleanup()
    return EXIT_OK


async def _run_server(
    app: web.Application, settings: Settings, event: Event, ssl_context: ssl.SSLContext | None
) -> int:
    from aiohttp import web

    runner = await _started_runner(app)
    try:
        site = web.TCPSite(runner, settings.host, settings.port, ssl_context=ssl_context)
        try:
            await site.start()
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}; "
                "choose another port with --port"
            ) from None
        stop = _stop_on_signals()
        _print_welcome(settings, event)
        await stop.wait()
        print("Stopping.", flush=True)
    finally:
        await runner.cleanup()
    return EXIT_OK


def _print_welcome(settings: Settings, event: Event) -> None:
    # The links must be built from the same secret, store, program and public URL; quoted,
    # so that the printed commands can be pasted whatever the paths contain.
    given = [
        ("--data-dir", settings.data_dir, Path("data")),
        ("--event", settings.event_file, default_event_file()),
        ("--redis-url", settings.redis_url, None),
        ("--public-url", settings.public_url, DEFAULT_PUBLIC_URL),
    ]
    flags = "".join(
        f" {flag} {shlex.quote(str(value))}" for flag, value, default in given if value != default
    )
    booths = "|".join(booth.id for booth in event.booths) or "ID"
    speaker = event.speakers[0].id
    print(
        f'Dragoman is serving "{_title(event)}" '
        f"({len(event.sessions)} sessions, {len(event.speakers)} speakers).\n"
        f"Open {settings.public_url}/ in a browser.\n"
        f"Staff links (run in another terminal, same settings):\n"
        f"  dragoman invite --role moderator{flags}\n"
        f"  dragoman invite --role interpreter --booth {booths}{flags}\n"
        f"  dragoman invite --role speaker --speaker {speaker}{flags}\n"
        f"Registrations: dragoman registrations{flags}\n"
        f"Press Ctrl+C to stop.",
        flush=True,
    )


# --- demo -------------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    # A data directory of its own unless told: the demo's live state and secret must
    # not mix with a real event's.
    with tempfile.TemporaryDirectory(prefix="dragoman-demo-") as scratch:
        if args.data_dir is None:
            args.data_dir = Path(scratch)
        settings = _settings(args, host=args.host, port=args.port)
        # Warnings only: the links and what happens on air must not drown in the log.
        configure_logging(settings.log_format, level=logging.WARNING)
        event = _program(settings)
        if not event.speakers:
            raise CommandError(f"{settings.event_file} has no speakers: there is nothing to show")
        signer = _signer(settings)
        if args.turn_seconds < 6:
            raise CommandError(
                "--turn-seconds must be at least 6 (a cough or a handover fits in a turn)"
            )
        from signaling.app import create_app
        from signaling.demo import run_demo
        from signaling.demo.cast import CastError
        from streamer.aiortc_internals import AiortcIncompatible

        app = create_app(settings, event=event)
        try:
            asyncio.run(
                run_demo(
                    app,
                    settings.host,
                    settings.port,
                    str(settings.public_url).rstrip("/"),
                    media_addresses=settings.rtc_addresses,
                    signer=signer,
                    event=event,
                    turn_s=args.turn_seconds,
                )
            )
        except StoreError as exc:
            raise CommandError(f"cannot open the store: {exc}") from None
        except AiortcIncompatible as exc:
            raise CommandError(f"the installed WebRTC libraries cannot be used: {exc}") from None
        except CastError as exc:
            raise CommandError(f"the simulated participants could not join: {exc}") from None
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}; "
                "choose another port with --port"
            ) from None
    return EXIT_OK


# --- check-config ----------------------------------------------------------------------------


def _check_config(args: argparse.Namespace) -> int:
    try:
        event = load_program(args.file)
    except ProgramError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_PROBLEM
    print(f"OK: {_title(event)}, {len(event.sessions)} sessions, {len(event.speakers)} speakers")
    return EXIT_OK


# --- invite ----------------------------------------------------------------------------------


def _invite(args: argparse.Namespace) -> int:
    settings = _settings(args)
    event = _program(settings)
    if args.list:
        if args.role or args.booth or args.speaker or args.name or args.email:
            raise CommandError("--list shows the links already issued: it takes no --role")
        return _list_invitations(settings, event, as_json=args.json)
    if args.json:
        raise CommandError("--json is only for --list")
    if args.role is None:
        raise CommandError(
            "say which link to make with --role moderator|interpreter|speaker, "
            "or list the links issued with --list"
        )
    role = Role(args.role)
    booth_id = args.booth
    speaker_id = args.speaker
    valid_booths = ", ".join(booth.id for booth in event.booths) or "(the program has none)"
    valid_speakers = ", ".join(speaker.id for speaker in event.speakers)
    if role is Role.INTERPRETER:
        if not booth_id:
            raise CommandError(f"an interpreter link needs --booth; the booths are: {valid_booths}")
        try:
            event.booth(booth_id)
        except UnknownBooth:
            raise CommandError(
                f"there is no booth {booth_id!r} in {settings.event_file}; "
                f"the booths are: {valid_booths}"
            ) from None
    elif booth_id:
        raise CommandError("--booth is only for --role interpreter")
    if role is Role.SPEAKER:
        if not speaker_id:
            raise CommandError(
                f"a speaker link needs --speaker; the speakers are: {valid_speakers}"
            )
        try:
            event.speaker(speaker_id)
        except UnknownSpeaker:
            raise CommandError(
                f"there is no speaker {speaker_id!r} in {settings.event_file}; "
                f"the speakers are: {valid_speakers}"
            ) from None
    elif speaker_id:
        raise CommandError("--speaker is only for --role speaker")
    now = datetime.now(UTC)
    if args.ttl_hours is not None:
        if args.ttl_hours <= 0:
            raise CommandError("--ttl-hours must be a positive number of hours")
        ttl = timedelta(hours=args.ttl_hours)
    else:
        ttl = staff_link_ttl(event, settings.staff_link_margin_hours, now)
    subject = args.name or _default_subject(role, booth_id, speaker_id)
    if len(subject) > 200:
        raise CommandError("--name has at most 200 characters")
    name = args.name or (event.speaker(speaker_id).name if speaker_id else "")
    # The token's expiry is whole seconds: the record says the same instant.
    expires = datetime.fromtimestamp(int(now.timestamp() + ttl.total_seconds()), UTC)
    invitation = Invitation(
        id=new_invitation_id(),
        event_id=event.id,
        role=role,
        subject=subject,
        booth=booth_id,
        speaker=speaker_id,
        name=name,
        issued_at=now,
        expires_at=expires,
    )
    signer = _signer(settings)
    # Recorded before it is shown: a link that exists is a link that can be revoked.
    asyncio.run(_record_invitation(settings, invitation))
    token = signer.issue(
        role,
        subject=subject,
        booth=booth_id,
        speaker=speaker_id,
        invitation=invitation.id,
        ttl=expires - now,
    )
    link = f"{settings.public_url}/{ROLE_PAGES[role]}?token={token}"
    if args.email is not None:
        mailer = _mailer(settings, "--email")
        try:
            address = normalise_email(args.email)
        except ValueError as exc:
            raise CommandError(f"--email: {exc}") from None
        message = staff_letter(
            mailer,
            ui_lang=args.lang,
            event=event,
            role=role,
            email=address,
            link=link,
            expires=expires,
        )
        try:
            asyncio.run(mailer.send(message))
        except MailError as exc:
            raise CommandError(str(exc)) from None
        print(f"Sent {role.described} link for {subject!r} to {address}.", file=sys.stderr)
    print(link)
    print(
        f"{role.described} link {invitation.id} for {subject!r}, valid until "
        f"{expires:%Y-%m-%d %H:%M} UTC. Send it only to that person; "
        f"`dragoman revoke {invitation.id}` takes it back.",
        file=sys.stderr,
    )
    return EXIT_OK


async def _record_invitation(settings: Settings, invitation: Invitation) -> None:
    store = open_store(settings)
    try:
        async with store:
            await store.add_invitation(invitation)
    except StoreError as exc:
        raise CommandError(f"cannot record the link in the store: {exc}") from None


async def _load_invitations(settings: Settings, event: Event) -> list[Invitation]:
    store = open_store(settings)
    try:
        async with store:
            return await store.invitations(event.id)
    except StoreError as exc:
        raise CommandError(f"cannot read the store: {exc}") from None


def _list_invitations(settings: Settings, event: Event, *, as_json: bool) -> int:
    found = asyncio.run(_load_invitations(settings, event))
    now = datetime.now(UTC)
    if as_json:
        print(json.dumps([invitation.as_dict(now) for invitation in found], indent=2))
        return EXIT_OK
    print(f"{len(found)} staff links for {_title(event)}")
    if not found:
        return EXIT_OK
    rows = [("ID", "ROLE", "FOR", "NAME", "ISSUED (UTC)", "VALID UNTIL (UTC)", "STATUS")]
    for invitation in found:
        status = invitation.status(now)
        if invitation.revoked_at is not None:
            status = f"revoked {invitation.revoked_at:%Y-%m-%d %H:%M}"
        rows.append(
            (
                invitation.id,
                invitation.role.value,
                invitation.booth or invitation.speaker or "",
                _printable(invitation.name or invitation.subject),
                f"{invitation.issued_at:%Y-%m-%d %H:%M}",
                f"{invitation.expires_at:%Y-%m-%d %H:%M}",
                status,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    return EXIT_OK


def _printable(text: str) -> str:
    # A terminal must not obey a name given on the command line of another person.
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


# --- revoke ----------------------------------------------------------------------------------


def _revoke(args: argparse.Namespace) -> int:
    settings = _settings(args)
    event = _program(settings)
    invitation_id = args.id.strip()

    async def revoke() -> tuple[Invitation | None, bool]:
        store = open_store(settings)
        try:
            async with store:
                found = await store.invitation(invitation_id)
                if found is None or found.event_id != event.id:
                    return None, False
                return await store.revoke_invitation(invitation_id)
        except StoreError as exc:
            raise CommandError(f"cannot use the store: {exc}") from None

    invitation, now = asyncio.run(revoke())
    if invitation is None:
        raise CommandError(
            f"{NoSuchInvitation(invitation_id)} for {_title(event)}; "
            "`dragoman invite --list` shows the links issued"
        )
    if not now:
        raise CommandError(str(AlreadyRevoked(invitation)))
    print(
        f"Revoked staff link {invitation.id} ({_printable(invitation.described)}): it is "
        "refused from now on, and the pages open with it are closed within seconds."
    )
    return EXIT_OK


def _mailer(settings: Settings, flag: str) -> Mailer:
    if settings.smtp_url is None or settings.mail_from is None:
        raise CommandError(
            f"{flag} sends mail: set DRAGOMAN_SMTP_URL and DRAGOMAN_MAIL_FROM "
            "(see the README's settings)"
        )
    return Mailer(
        settings.smtp_url.get_secret_value(), settings.mail_from, ca_file=settings.smtp_ca_file
    )


def _default_subject(role: Role, booth: str | None, speaker: str | None) -> str:
    if role is Role.SPEAKER and speaker:
        return speaker
    # Two interpreters of one booth, or two moderators, must not share an identity.
    prefix = f"{booth}-interpreter" if booth else role.value
    return f"{prefix}-{secrets.token_hex(3)}"


# --- registrations ---------------------------------------------------------------------------


def _registrations(args: argparse.Namespace) -> int:
    settings = _settings(args)
    event = _program(settings)
    if args.again and not args.send_links:
        raise CommandError("--again is only for --send-links")
    if args.send_links:
        if args.csv is not None or args.links:
            raise CommandError("--send-links sends mail; export with --csv separately")
        return _send_links(settings, event, again=args.again)
    signer = _signer(settings) if args.links else None
    rows = asyncio.run(_load_registrations(settings, event))
    link: Callable[[Registration], str] | None = None
    if signer is not None:
        from signaling.http_api import attendee_ttl

        ttl = attendee_ttl(event, settings.token_ttl_hours, datetime.now(UTC))

        def link(registration: Registration) -> str:
            token = signer.issue(
                Role.ATTENDEE,
                subject=registration.id,
                registration=registration.id,
                ttl=ttl,
            )
            return f"{settings.public_url}/watch?token={token}"

    if args.csv is None:
        _print_table(rows, event, link)
    elif args.csv == "-":
        _write_csv(rows, sys.stdout, link)
    else:
        path = Path(args.csv)
        try:
            if not path.exists():
                private_file(path)  # names and email addresses: the organizer's eyes only
            with path.open("w", encoding="utf-8", newline="") as out:
                _write_csv(rows, out, link)
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc.strerror}") from None
        print(f"Wrote {len(rows)} registrations to {path}", file=sys.stderr)
    return EXIT_OK


def sent_journal(settings: Settings, event: Event) -> Path:
    """The file that remembers whom `--send-links` has mailed, one registration id a line."""
    return settings.data_dir / f"links-mailed-{event.id}.txt"


def _send_links(settings: Settings, event: Event, *, again: bool) -> int:
    mailer = _mailer(settings, "--send-links")
    signer = _signer(settings)
    rows = asyncio.run(_load_registrations(settings, event))
    journal = sent_journal(settings, event)
    try:
        done = set() if again or not journal.exists() else set(journal.read_text("utf-8").split())
    except OSError as exc:
        raise CommandError(f"cannot read {journal}: {exc.strerror}") from None
    from signaling.http_api import attendee_ttl

    ttl = attendee_ttl(event, settings.token_ttl_hours, datetime.now(UTC))
    todo = [row for row in rows if row.id not in done]
    skipped = len(rows) - len(todo)
    sent = asyncio.run(_mail_each(mailer, signer, settings, event, todo, journal, ttl))
    print(
        f"Mailed {sent} personal links"
        + (f"; {skipped} had theirs already (--again sends them again)" if skipped else "")
        + ".",
        file=sys.stderr,
    )
    return EXIT_OK


async def _mail_each(
    mailer: Mailer,
    signer: TokenSigner,
    settings: Settings,
    event: Event,
    rows: Sequence[Registration],
    journal: Path,
    ttl: timedelta,
) -> int:
    sent = 0
    try:
        private_directory(journal.parent)
        private_file(journal)
        out = journal.open("a", encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write {journal}: {exc.strerror}") from None
    with out:
        for row in rows:
            token = signer.issue(Role.ATTENDEE, subject=row.id, registration=row.id, ttl=ttl)
            message = registration_letter(
                mailer,
                ui_lang=ui_language(row.language),
                event=event,
                public_url=str(settings.public_url),
                name=row.name,
                email=row.email,
                link=f"{settings.public_url}/watch?token={token}",
            )
            try:
                await mailer.send(message)
            except MailError as exc:
                raise CommandError(
                    f"{exc}; {sent} mailed before it. Run the same command again to go on "
                    "where it stopped."
                ) from None
            # Written at once: an interruption must not mail anyone twice on the next run.
            out.write(f"{row.id}\n")
            out.flush()
            sent += 1
            print(f"mailed {row.email}", file=sys.stderr)
    return sent


async def _load_registrations(settings: Settings, event: Event) -> list[Registration]:
    store = open_store(settings)
    try:
        async with store:
            return await store.registrations(event.id)
    except StoreError as exc:
        raise CommandError(f"cannot read the store: {exc}") from None


def _spreadsheet_safe(value: str) -> str:
    return f"'{value}" if value.startswith(_FORMULA_START) else value


def _write_csv(
    rows: Sequence[Registration], out: TextIO, link: Callable[[Registration], str] | None
) -> None:
    writer = csv.writer(out)
    writer.writerow([*CSV_COLUMNS, *(["link"] if link else [])])
    for row in rows:
        # Only what a stranger typed is neutralised: an id or a date the node wrote is kept
        # exactly (an id may start with "-").
        cells = [
            row.id,
            _spreadsheet_safe(row.name),
            _spreadsheet_safe(row.email),
            row.language,
            row.created_at.isoformat(),
        ]
        writer.writerow(cells + ([link(row)] if link else []))


def _print_table(
    rows: Sequence[Registration], event: Event, link: Callable[[Registration], str] | None
) -> None:
    print(f"{len(rows)} registrations for {_title(event)}")
    for row in rows:
        # Printed with repr-like quoting of control characters: a terminal must not obey a name.
        name = (
            row.name.encode("unicode_escape").decode("ascii")
            if not row.name.isprintable()
            else row.name
        )
        line = f"{row.created_at:%Y-%m-%d %H:%M}  {row.language}  {name} <{row.email}>"
        print(f"{line}  {link(row)}" if link else line)


# --- recordings ------------------------------------------------------------------------------


def _recordings(args: argparse.Namespace) -> int:
    from signaling.recordings import RecordingError, list_recordings

    settings = _settings(args)
    try:
        found = list_recordings(settings.data_dir, args.session)
    except RecordingError as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        print(json.dumps([info.as_dict() for info in found], indent=2))
        return EXIT_OK
    if not found:
        print(f"No recordings in {settings.data_dir}")
        return EXIT_OK
    for info in found:
        print(
            f"{info.session}  part {info.part}  {info.channel:<8}  {info.started_at or '?'}  "
            f"{info.duration_s:8.1f} s  {info.bytes:>12} B  {info.path}"
        )
    return EXIT_OK


# --- the parser -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dragoman",
        description="Live events with simultaneous interpretation over WebRTC.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the server", description="Run the server.")
    serve.add_argument("--host", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: 8080)")
    serve.add_argument(
        "--tls-cert", type=Path, metavar="FILE", help="serve HTTPS: PEM certificate (chain)"
    )
    serve.add_argument(
        "--tls-key", type=Path, metavar="FILE", help="serve HTTPS: the certificate's PEM key"
    )
    serve.add_argument(
        "--rtc-ports",
        metavar="MIN-MAX",
        help="UDP ports for media, to open in the firewall (default: any port)",
    )
    serve.add_argument(
        "--workers",
        metavar="N",
        help="processes serving the event on this machine, one per core with 'auto' (default: 1)",
    )
    # Set by the supervisor of --workers for each worker it starts; not for people.
    serve.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--handoff", type=Path, help=argparse.SUPPRESS)
    serve.add_argument("--hub", type=Path, help=argparse.SUPPRESS)
    _add_settings_flags(serve)
    serve.set_defaults(run=_serve)

    demo = commands.add_parser(
        "demo",
        help="run the server with simulated speakers and interpreters",
        description=(
            "Run the server on the embedded defaults with simulated people: speakers take "
            "turns on air, interpreters work into the other language, cough and hand over. "
            "Prints the attendee link to open."
        ),
    )
    demo.add_argument("--host", help="address to listen on (default: 127.0.0.1)")
    demo.add_argument("--port", type=int, help="port to listen on (default: 8080)")
    demo.add_argument(
        "--turn-seconds", type=float, default=20.0, help="seconds each speaker is on air (20)"
    )
    _add_settings_flags(demo)
    demo.set_defaults(run=_demo)

    check = commands.add_parser(
        "check-config",
        help="check an event program file",
        description="Check an event program; print every problem, or a summary when it is OK.",
    )
    check.add_argument("file", type=Path, help="the program file (YAML)")
    check.add_argument("--data-dir", type=Path, help="accepted for symmetry; not used")
    check.set_defaults(run=_check_config)

    invite = commands.add_parser(
        "invite",
        help="print a staff link",
        description="Print a link that admits a moderator, an interpreter or a speaker.",
    )
    invite.add_argument("--role", choices=[r.value for r in ROLE_PAGES])
    invite.add_argument("--booth", help="the booth id (interpreters)")
    invite.add_argument("--speaker", help="the speaker id from the program (speakers)")
    invite.add_argument("--name", help="who the link is for (default: generated)")
    invite.add_argument(
        "--ttl-hours",
        type=float,
        help="validity in hours from now (default: until the end of the event's day plus "
        "DRAGOMAN_STAFF_LINK_MARGIN_HOURS)",
    )
    invite.add_argument(
        "--list", action="store_true", help="list the staff links issued (id, for whom, status)"
    )
    invite.add_argument("--json", action="store_true", help="with --list: print JSON")
    invite.add_argument(
        "--email", metavar="ADDRESS", help="also mail the link to ADDRESS (needs DRAGOMAN_SMTP_URL)"
    )
    invite.add_argument(
        "--lang",
        choices=SUPPORTED_LANGUAGES,
        default="en",
        help="language of the mail (default: en)",
    )
    _add_settings_flags(invite)
    invite.set_defaults(run=_invite)

    revoke = commands.add_parser(
        "revoke",
        help="take back a staff link",
        description=(
            "Revoke a staff link by its id (`dragoman invite --list` shows them): it is "
            "refused from now on, on every node, and the pages open with it are closed."
        ),
    )
    revoke.add_argument("id", help="the link's id, as `invite` printed it")
    _add_settings_flags(revoke)
    revoke.set_defaults(run=_revoke)

    registrations = commands.add_parser(
        "registrations",
        help="list or export registrations",
        description="List the registrations, or export them as CSV.",
    )
    registrations.add_argument(
        "--csv", metavar="FILE", help="write CSV to FILE ('-' for standard output)"
    )
    registrations.add_argument(
        "--links", action="store_true", help="add each person's personal link"
    )
    registrations.add_argument(
        "--send-links",
        action="store_true",
        help="mail every registrant his personal link (needs DRAGOMAN_SMTP_URL); "
        "those already mailed are skipped, so an interrupted run can be resumed",
    )
    registrations.add_argument(
        "--again", action="store_true", help="with --send-links: mail everyone, even those mailed"
    )
    _add_settings_flags(registrations)
    registrations.set_defaults(run=_registrations)

    recordings = commands.add_parser(
        "recordings",
        help="list the sessions' recordings",
        description=(
            "List the recorded files (the program, the original and every language "
            "channel of each session) under the data directory."
        ),
    )
    recordings.add_argument("--session", metavar="ID", help="only this session's recordings")
    recordings.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list of {session, channel, part, path, started_at, duration_s, bytes}",
    )
    _add_settings_flags(recordings, event=False)
    recordings.set_defaults(run=_recordings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except CommandError as exc:
        print(f"dragoman {args.command}: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
