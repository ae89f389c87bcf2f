"""`dragoman demo`: a node with simulated people on it, for a newcomer with one browser.

The node is the real one (`create_app` on the settings given, in a data directory of
its own); the people are real clients of it (`signaling.demo.cast`): a moderator, a few
speakers of one session who take turns on air (a card with their name and affiliation,
a voice in their language), and two interpreters per spoken booth who work into the
other language, cough and hand over on a timer. `Script` says who says what and when;
`Demo` plays it against a running node; `run_demo` does both and prints the links.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiohttp import web

from signaling.demo.cast import CastError, Participant
from signaling.demo.media import (
    CardTrack,
    SpeechTrack,
    Voice,
    card_image,
    make_voice,
    speech_available,
)
from signaling.program import Booth, Event, Session, Speaker
from signaling.tokens import Role, TokenSigner

log = logging.getLogger(__name__)

#: Speakers who take turns: enough to show the direction following the speaker.
MAX_TURNS = 4
TURN_S = 20.0
#: Within a turn: when the cough (even turns) or the handover (odd turns) happens.
COUGH_AT_S = 7.0
COUGH_S = 3.0
HANDOVER_AT_S = 8.0
HANDOVER_ANSWER_S = 2.0
LINK_TTL = timedelta(hours=12)
INTERPRETERS = ("anna", "boris")
SPEAKER_PITCH = (35, 55, 25, 65)
INTERPRETER_PITCH = (75, 45)

Announce = Callable[[str], None]


@dataclass(frozen=True)
class Script:
    """Who the demo's people are and what each says: a pure function of the program."""

    event: Event
    session: Session
    turns: tuple[Speaker, ...]
    booths: tuple[Booth, ...]

    @classmethod
    def of(cls, event: Event) -> Script:
        """The session whose speakers speak the most languages (the first of equals);
        its speakers in turns that alternate languages as long as they can."""
        session = max(
            event.sessions,
            key=lambda s: (len({sp.language for sp in s.speakers}), -event.sessions.index(s)),
        )
        by_language: dict[str, list[Speaker]] = {}
        for speaker in session.speakers:
            by_language.setdefault(speaker.language, []).append(speaker)
        turns: list[Speaker] = []
        while len(turns) < MAX_TURNS and any(by_language.values()):
            for queue in by_language.values():
                if queue and len(turns) < MAX_TURNS:
                    turns.append(queue.pop(0))
        booths = tuple(event.spoken_booths)
        return cls(event, session, tuple(turns), booths)

    def speech(self, speaker: Speaker, language: str) -> str:
        """What is said while `speaker` is on air, in `language` (his own, or a booth's
        interpretation of it): who he is and what the event is."""
        name = (
            speaker.name_native
            if language == speaker.language and speaker.name_native
            else speaker.name
        )
        return (
            f"{name}. {speaker.affiliation.get(language)}. {self.event.title.get(language)}. "
            f"{self.event.organizer.get(language)}."
        )

    async def speaker_voice(self, speaker: Speaker) -> Voice:
        pitch = SPEAKER_PITCH[self.turns.index(speaker) % len(SPEAKER_PITCH)]
        return await make_voice(self.speech(speaker, speaker.language), speaker.language, pitch)

    async def interpreter_voice(self, interpreter: int, speaker: Speaker, into: str) -> Voice:
        pitch = INTERPRETER_PITCH[interpreter % len(INTERPRETER_PITCH)]
        return await make_voice(self.speech(speaker, into), into, pitch)


class _Interpreter:
    """A simulated interpreter: says the speaker on air's words in the language his
    booth works into now (read from the state the node sends him), silent off air."""

    def __init__(self, script: Script, booth: Booth, index: int, participant: Participant) -> None:
        self.booth = booth
        self.index = index
        self.participant = participant
        self.voices: dict[tuple[str, str], Voice] = {}
        self.script = script
        self.track = SpeechTrack(self.voice)

    async def render(self) -> None:
        for speaker in self.script.turns:
            for into in self.booth.works_into:
                if into != speaker.language:
                    self.voices[speaker.id, into] = await self.script.interpreter_voice(
                        self.index, speaker, into
                    )

    def voice(self) -> Voice | None:
        state = self.participant.state
        if state is None or not (state.get("you") or {}).get("on_air"):
            return None
        on_air = state.get("on_air") or {}
        booth = next((b for b in state.get("booths", []) if b["id"] == self.booth.id), None)
        direction = (booth or {}).get("direction") or {}
        return self.voices.get((on_air.get("speaker"), direction.get("into")))


class Demo:
    """The script played against a node at `url` whose links `signer` signs."""

    def __init__(
        self,
        script: Script,
        signer: TokenSigner,
        url: str,
        *,
        media_addresses: Sequence[str] = (),
        turn_s: float = TURN_S,
        announce: Announce = print,
    ) -> None:
        self.script = script
        self.signer = signer
        self.url = url.rstrip("/")
        self.turn_s = turn_s
        self.announce = announce
        self._media_addresses = tuple(media_addresses)
        self._people: list[Participant] = []
        self._interpreters: dict[str, list[_Interpreter]] = {}
        self._on_air: dict[str, int] = {}
        self._moderator: Participant | None = None
        self._timeline: asyncio.Task[None] | None = None

    def link(self, role: Role, page: str, subject: str, **scope: Any) -> str:
        token = self.signer.issue(role, subject=subject, ttl=LINK_TTL, **scope)
        return f"{self.url}/{page}?token={token}"

    def _participant(self, who: str, role: Role, **scope: Any) -> Participant:
        token = self.signer.issue(role, subject=who, ttl=LINK_TTL, **scope)
        person = Participant(who, self.url, token, self._media_addresses)
        self._people.append(person)
        return person

    async def start(self) -> None:
        """Connect everyone, publish, open the session and start the timeline."""
        script = self.script
        moderator = self._participant("demo-moderator", Role.MODERATOR)
        self._moderator = moderator
        await moderator.connect()
        for i, speaker in enumerate(script.turns):
            person = self._participant(speaker.id, Role.SPEAKER, speaker=speaker.id)
            image = card_image(
                speaker.name,
                speaker.name_native,
                speaker.affiliation.get(speaker.language),
                script.event.title.get(speaker.language),
                hue=40 + 97 * i,
            )
            voice = await script.speaker_voice(speaker)
            await person.connect()
            await person.publish(SpeechTrack(lambda voice=voice: voice), CardTrack(image))
        for booth in script.booths:
            interpreters = []
            for index, name in enumerate(INTERPRETERS):
                person = self._participant(name, Role.INTERPRETER, booth=booth.id)
                interpreter = _Interpreter(script, booth, index, person)
                await interpreter.render()
                await person.connect()
                await person.publish(interpreter.track)
                interpreters.append(interpreter)
            self._interpreters[booth.id] = interpreters
        wanted = {speaker.id for speaker in script.turns}
        try:
            await moderator.wait_state(lambda s: wanted <= set(s["publishers"]["speakers"]))
        except TimeoutError:
            raise CastError(
                "the simulated speakers' media did not reach the node; check "
                "DRAGOMAN_RTC_ADDRESSES (the demo's people connect on the node's addresses)"
            ) from None
        await moderator.send("start_session", session_id=script.session.id)
        for booth_id, interpreters in self._interpreters.items():
            await interpreters[0].participant.send("mic", on=True)
            self._on_air[booth_id] = 0
        self._timeline = asyncio.get_running_loop().create_task(self._play())

    async def _play(self) -> None:
        assert self._moderator is not None
        turn = 0
        while True:
            speaker = self.script.turns[turn % len(self.script.turns)]
            await self._moderator.send("put_on_air", speaker_id=speaker.id)
            self.announce(f"On air: {speaker.name} ({speaker.language}).")
            if turn % 2 == 0:
                await asyncio.sleep(min(COUGH_AT_S, self.turn_s / 3))
                await self._cough(True)
                await asyncio.sleep(COUGH_S)
                await self._cough(False)
                await asyncio.sleep(
                    max(0.0, self.turn_s - COUGH_S - min(COUGH_AT_S, self.turn_s / 3))
                )
            else:
                await asyncio.sleep(min(HANDOVER_AT_S, self.turn_s / 3))
                await self._handover()
                await asyncio.sleep(
                    max(0.0, self.turn_s - HANDOVER_ANSWER_S - min(HANDOVER_AT_S, self.turn_s / 3))
                )
            turn += 1

    async def _cough(self, on: bool) -> None:
        for booth_id, interpreters in self._interpreters.items():
            interpreter = interpreters[self._on_air[booth_id]]
            interpreter.track.coughing = on
            await interpreter.participant.send("cough", on=on)
            if on:
                who = interpreter.participant.who
                self.announce(f"{who} coughs in booth {booth_id}: the channel goes silent.")

    async def _handover(self) -> None:
        pairs = []
        for booth_id, interpreters in self._interpreters.items():
            on_air = self._on_air[booth_id]
            partner = interpreters[1 - on_air]
            await partner.participant.send("request_handover")
            self.announce(f"{partner.participant.who} asks for the handover in booth {booth_id}.")
            pairs.append((booth_id, interpreters[on_air], partner))
        await asyncio.sleep(HANDOVER_ANSWER_S)
        for booth_id, current, partner in pairs:
            await current.participant.send("accept_handover")
            self._on_air[booth_id] = partner.index
            self.announce(f"{partner.participant.who} is on air in booth {booth_id}.")

    async def close(self) -> None:
        if self._timeline is not None:
            self._timeline.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timeline
        for person in reversed(self._people):
            with contextlib.suppress(Exception):
                await person.close()


def welcome_text(demo: Demo) -> str:
    script = demo.script
    booth = script.booths[0].id if script.booths else None
    lines = [
        f'Dragoman demo: "{script.event.title.get("en")}", {script.session.title.get("en")}.',
        "Voices: "
        + (
            "synthetic speech (espeak-ng)."
            if speech_available()
            else "tones in the rhythm of speech (install espeak-ng to hear words)."
        ),
        f"Every {demo.turn_s:g} s the next speaker goes on air: "
        + ", ".join(f"{s.name} ({s.language})" for s in script.turns)
        + ".",
        "The interpreters anna and boris work into the other language; in one turn the one "
        "on air coughs (his channel goes silent), in the next they hand over.",
        "",
        "Watch and listen as an attendee (choose a language channel on the page):",
        f"  {demo.link(Role.ATTENDEE, 'watch', 'demo-attendee')}",
        "Staff consoles:",
        f"  moderator (studio): {demo.link(Role.MODERATOR, 'studio', 'you-moderator')}",
    ]
    if booth is not None:
        lines.append(
            f"  interpreter (booth {booth}): "
            f"{demo.link(Role.INTERPRETER, 'booth', 'you-interpreter', booth=booth)}"
        )
    lines.append("Press Ctrl+C to stop.")
    return "\n".join(lines)


async def run_demo(
    app: web.Application,
    host: str,
    port: int,
    public_url: str,
    *,
    media_addresses: Sequence[str],
    signer: TokenSigner,
    event: Event,
    turn_s: float = TURN_S,
) -> None:
    """Serve `app` on host:port and play the script against it until SIGINT/SIGTERM."""
    from signaling.app import make_runner

    runner = make_runner(app)
    demo: Demo | None = None
    try:
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        demo = Demo(
            Script.of(event),
            signer,
            public_url,
            media_addresses=media_addresses,
            turn_s=turn_s,
            announce=lambda line: print(line, flush=True),
        )
        print("Starting the simulated speakers and interpreters...", flush=True)
        await demo.start()
        print(welcome_text(demo), flush=True)
        await stop.wait()
        print("Stopping.", flush=True)
    finally:
        if demo is not None:
            await demo.close()
        await runner.cleanup()
