"""Registration by mail, against a real SMTP server on loopback (aiosmtpd): the
confirmation, its link that works, its calendar entry that parses, a link asked for
again going to the address only, STARTTLS, a server that fails, and the CLI's mails."""

from __future__ import annotations

import asyncio
import re
import ssl
from email.message import EmailMessage
from pathlib import Path

import aiohttp
import icalendar
import pytest

from signaling.settings import SettingsError, load_settings
from signaling.tokens import Role
from tests.support.certificates import write_self_signed
from tests.support.server import RunningServer, StartServer, dragoman, dragoman_env
from tests.support.smtp_server import SmtpServer, start_smtp_server

SENDER = "Events <events@example.org>"
LINK = re.compile(r"https?://127\.0\.0\.1:\d+/watch\?token=[A-Za-z0-9_.-]+")


def mail_settings(smtp: SmtpServer, scheme: str = "smtp+plain") -> dict[str, str]:
    return {"smtp_url": f"{scheme}://127.0.0.1:{smtp.port}", "mail_from": SENDER}


def text_of(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return body.get_content()


def calendar_of(message: EmailMessage) -> icalendar.Calendar:
    attachments = [part for part in message.iter_attachments() if part.get_filename()]
    assert [part.get_filename() for part in attachments] == ["event.ics"]
    assert attachments[0].get_content_type() == "text/calendar"
    return icalendar.Calendar.from_ical(attachments[0].get_payload(decode=True))


async def post(
    server: RunningServer, path: str, body: dict, lang: str = "en"
) -> tuple[int, dict, aiohttp.typedefs.LooseHeaders]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}{path}", json=body, headers={"Accept-Language": lang}) as response,
    ):
        return response.status, await response.json(), response.headers


async def test_a_registration_is_confirmed_by_mail_with_link_time_and_calendar_entry(
    start_server: StartServer, smtp_server: SmtpServer
) -> None:
    server = await start_server(**mail_settings(smtp_server))
    status, body, _ = await post(
        server,
        "/api/registrations",
        {
            "name": "Élise Dubois",
            "email": "elise@example.org",
            "language": "fr",
            "timezone": "America/New_York",
        },
        lang="fr",
    )
    assert status == 201, body
    assert body["mailed"] is True and body["link"]

    message = await smtp_server.next_message()
    assert message["To"] == "elise@example.org"
    assert message["From"] == SENDER
    assert message["Subject"] == (
        "Votre lien personnel : Mémoire historique partagée : le mouvement de la Résistance"
    )
    text = text_of(message)
    assert text.startswith("Bonjour Élise Dubois,")
    # 14:00 in Brussels is 08:00 in New York on 21 June 2027, said in French.
    assert "21 juin 2027 à 08:00 (heure de America/New_York)" in text
    links = LINK.findall(text)
    assert links == [body["link"]]
    claims = server.signer.verify(links[0].split("token=", 1)[1])
    stored = await server.store.registration_by_email(server.event.id, "elise@example.org")
    assert stored is not None and claims.role is Role.ATTENDEE
    assert claims.registration == stored.id
    # The link in the mail opens the player.
    async with aiohttp.ClientSession() as http, http.get(links[0]) as page:
        assert page.status == 200
        assert 'id="program-video"' in await page.text()

    calendar = calendar_of(message)
    (entry,) = calendar.walk("VEVENT")
    assert entry.decoded("DTSTART") == server.event.starts_at_utc
    assert str(entry["SUMMARY"]) == server.event.title.get("fr")
    assert str(entry["URL"]) == links[0]
    assert links[0] in str(entry["DESCRIPTION"])


async def test_registering_an_address_again_mails_the_link_and_shows_nothing(
    start_server: StartServer, smtp_server: SmtpServer
) -> None:
    server = await start_server(**mail_settings(smtp_server))
    first = {"name": "Anna Petrova", "email": "anna@example.org", "language": "ru"}
    status, _, _ = await post(server, "/api/registrations", first, lang="ru")
    assert status == 201
    await smtp_server.next_message()

    # Someone else types her address: he learns nothing, the link goes to her mailbox.
    status, body, _ = await post(
        server,
        "/api/registrations",
        {"name": "Mallory", "email": "ANNA@example.org", "language": "fr"},
    )
    assert status == 200
    assert body == {
        "registration": None,
        "created": False,
        "link": None,
        "mailed": True,
        "email": "anna@example.org",
    }
    again = await smtp_server.next_message()
    assert again["To"] == "anna@example.org"
    text = text_of(again)
    assert "Here is your personal link" in text and "Anna Petrova" in text
    assert len(LINK.findall(text)) == 1


async def test_a_lookup_mails_the_link_and_answers_the_same_for_unknown_addresses(
    start_server: StartServer, smtp_server: SmtpServer
) -> None:
    server = await start_server(**mail_settings(smtp_server))
    await post(
        server,
        "/api/registrations",
        {"name": "Jean", "email": "jean@example.org", "language": "fr"},
    )
    await smtp_server.next_message()

    status, body, _ = await post(
        server, "/api/registrations/lookup", {"email": "Jean@Example.org"}, lang="ru"
    )
    assert (status, body) == (202, {"mailed": True, "email": "Jean@example.org"})
    mail = await smtp_server.next_message()
    assert mail["To"] == "jean@example.org"
    assert text_of(mail).startswith("Здравствуйте, Jean!")
    token = LINK.findall(text_of(mail))[0].split("token=", 1)[1]
    assert server.signer.verify(token).role is Role.ATTENDEE

    status, body, _ = await post(
        server, "/api/registrations/lookup", {"email": "nobody@example.org"}
    )
    assert (status, body) == (202, {"mailed": True, "email": "nobody@example.org"})
    await asyncio.sleep(0.5)
    assert smtp_server.pending() == 0


async def test_lookups_for_one_address_are_limited_so_a_mailbox_is_not_flooded(
    start_server: StartServer, smtp_server: SmtpServer
) -> None:
    from signaling.registration import RegistrationLimits

    server = await start_server(
        registration_limits=RegistrationLimits(per_client=100, per_email=2),
        **mail_settings(smtp_server),
    )
    for _ in range(2):
        status, _, _ = await post(server, "/api/registrations/lookup", {"email": "x@example.org"})
        assert status == 202
    status, body, headers = await post(
        server, "/api/registrations/lookup", {"email": "x@example.org"}
    )
    assert status == 429 and body["error"]["field"] == "email"
    assert "at most 10 minutes" in body["error"]["message"]
    assert headers["Retry-After"] == "600"


async def test_a_mail_server_that_fails_is_said_so_and_the_registration_stands(
    start_server: StartServer, smtp_server: SmtpServer
) -> None:
    settings = mail_settings(smtp_server)
    await smtp_server.close()  # nobody listens on that port any more
    server = await start_server(**settings)
    status, body, _ = await post(
        server,
        "/api/registrations",
        {"name": "Olga", "email": "olga@example.org", "language": "ru"},
    )
    assert status == 201 and body["mailed"] is False and body["link"]
    status, body, _ = await post(server, "/api/registrations/lookup", {"email": "olga@example.org"})
    assert status == 503 and body["error"]["code"] == "mail_failed"


async def test_without_a_mail_server_the_link_is_shown_as_before(server: RunningServer) -> None:
    status, body, _ = await post(
        server,
        "/api/registrations",
        {"name": "Olga", "email": "olga@example.org", "language": "ru"},
    )
    assert status == 201 and body["mailed"] is False and LINK.fullmatch(body["link"])
    status, body, _ = await post(server, "/api/registrations/lookup", {"email": "olga@example.org"})
    assert status == 200 and LINK.fullmatch(body["link"])


async def test_starttls_is_required_and_used(start_server: StartServer, tmp_path: Path) -> None:
    cert, key = write_self_signed(tmp_path / "tls")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    secure = await start_smtp_server(tls_context=context)
    plain = await start_smtp_server()
    try:
        server = await start_server(
            smtp_url=f"smtp://127.0.0.1:{secure.port}", mail_from=SENDER, smtp_ca_file=cert
        )
        status, body, _ = await post(
            server,
            "/api/registrations",
            {"name": "Boris", "email": "boris@example.org", "language": "ru"},
        )
        assert status == 201 and body["mailed"] is True
        assert (await secure.next_message())["To"] == "boris@example.org"

        # smtp:// never falls back to plain text with a server that offers no STARTTLS.
        downgraded = await start_server(smtp_url=f"smtp://127.0.0.1:{plain.port}", mail_from=SENDER)
        status, body, _ = await post(
            downgraded,
            "/api/registrations",
            {"name": "Boris", "email": "boris2@example.org", "language": "ru"},
        )
        assert status == 201 and body["mailed"] is False
        assert plain.pending() == 0

        # smtps://: TLS from the first byte.
        implicit = await start_smtp_server(tls_context=context, implicit_tls=True)
        try:
            tls_server = await start_server(
                smtp_url=f"smtps://127.0.0.1:{implicit.port}", mail_from=SENDER, smtp_ca_file=cert
            )
            status, body, _ = await post(
                tls_server,
                "/api/registrations",
                {"name": "Vera", "email": "vera@example.org", "language": "ru"},
            )
            assert status == 201 and body["mailed"] is True
            assert (await implicit.next_message())["To"] == "vera@example.org"
        finally:
            await implicit.close()
    finally:
        await secure.close()
        await plain.close()


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"smtp_url": "smtp://mail.example.org"}, "DRAGOMAN_MAIL_FROM is not"),
        (
            {"smtp_url": "http://mail.example.org", "mail_from": SENDER},
            "should start with smtps://",
        ),
        ({"smtp_url": "smtps://", "mail_from": SENDER}, "names no host"),
        ({"smtp_url": "smtp://h.example.org", "mail_from": "events"}, "is not a sender"),
    ],
)
def test_mail_settings_are_checked(settings: dict[str, str], problem: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(**settings)
    assert problem in str(caught.value)


def test_the_smtp_password_never_shows() -> None:
    settings = load_settings(smtp_url="smtps://user:s3cret-pw@mail.example.org", mail_from=SENDER)
    assert "s3cret-pw" not in repr(settings)
    with pytest.raises(SettingsError) as caught:
        load_settings(smtp_url="ftp://user:s3cret-pw@mail.example.org", mail_from=SENDER)
    assert "s3cret-pw" not in str(caught.value)


async def test_invite_mails_a_staff_link(tmp_path: Path, smtp_server: SmtpServer) -> None:
    env = dragoman_env(
        DRAGOMAN_SMTP_URL=f"smtp+plain://127.0.0.1:{smtp_server.port}",
        DRAGOMAN_MAIL_FROM=SENDER,
    )
    result = await dragoman(
        "invite",
        "--role",
        "interpreter",
        "--booth",
        "ru-fr",
        "--name",
        "anna",
        "--email",
        "anna@example.org",
        "--lang",
        "fr",
        "--data-dir",
        tmp_path,
        env=env,
    )
    assert result.status == 0, result.stderr
    assert "Sent an interpreter link for 'anna' to anna@example.org" in result.stderr
    mail = await smtp_server.next_message()
    assert mail["To"] == "anna@example.org"
    assert mail["Subject"].startswith("Votre lien d'interprète")
    text = text_of(mail)
    link = re.search(r"http://\S+/booth\?token=\S+", text)
    assert link is not None and link.group(0) == result.stdout.strip()


async def test_invite_by_mail_needs_a_mail_server(tmp_path: Path) -> None:
    result = await dragoman(
        "invite", "--role", "moderator", "--email", "m@example.org", "--data-dir", tmp_path
    )
    assert result.status == 1
    assert "set DRAGOMAN_SMTP_URL and DRAGOMAN_MAIL_FROM" in result.stderr


async def test_send_links_mails_everyone_once_and_resumes_where_it_stopped(
    start_server: StartServer, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    server = await start_server()
    data_dir = server.settings.data_dir
    people = [("Anna", "anna@example.org", "ru"), ("Jean", "jean@example.org", "fr")]
    people.append(("Hans", "hans@example.org", "ru"))
    for name, email, language in people:
        status, _, _ = await post(
            server, "/api/registrations", {"name": name, "email": email, "language": language}
        )
        assert status == 201
    env = dragoman_env(
        DRAGOMAN_SMTP_URL=f"smtp+plain://127.0.0.1:{smtp_server.port}",
        DRAGOMAN_MAIL_FROM=SENDER,
    )

    async def send(*more: str) -> tuple[int, str, list[EmailMessage]]:
        result = await dragoman(
            "registrations", "--send-links", *more, "--data-dir", data_dir, env=env
        )
        mails = []
        while smtp_server.pending():
            mails.append(await smtp_server.next_message())
        return result.status, result.stderr, mails

    # The server gives out after two mails: the command stops and says how to go on.
    smtp_server.accept_only(2)
    status, stderr, mails = await send()
    assert status == 1 and "Run the same command again" in stderr
    assert [m["To"] for m in mails] == ["anna@example.org", "jean@example.org"]
    smtp_server.accept_only(None)
    status, stderr, mails = await send()
    assert status == 0, stderr
    assert [m["To"] for m in mails] == ["hans@example.org"]
    assert "2 had theirs already" in stderr
    # Each in his channel's language when it is one of the pages' languages.
    assert text_of(mails[0]).startswith("Здравствуйте, Hans!")
    status, stderr, mails = await send()
    assert status == 0 and mails == [] and "Mailed 0 personal links" in stderr
    status, stderr, mails = await send("--again")
    assert status == 0 and len(mails) == 3
    for mail in mails:
        (link,) = LINK.findall(text_of(mail))
        claims = server.signer.verify(link.split("token=", 1)[1])
        stored = await server.store.registration_by_email(server.event.id, mail["To"])
        assert stored is not None and claims.registration == stored.id


async def test_an_address_in_another_script_is_mailed_with_smtputf8(
    start_server: StartServer,
) -> None:
    smtp = await start_smtp_server(enable_SMTPUTF8=True)
    try:
        server = await start_server(**mail_settings(smtp))
        status, body, _ = await post(
            server,
            "/api/registrations",
            {"name": "Пётр", "email": "пётр@пример.рф", "language": "ru"},
            lang="ru",
        )
        assert status == 201 and body["mailed"] is True, body
        message = await smtp.next_message()
        assert message["To"] == "пётр@пример.рф"
        assert "SMTPUTF8" in smtp.envelopes[-1].mail_options
    finally:
        await smtp.close()
