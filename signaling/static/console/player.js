// The attendee's player as people know it from video players and Zoom: the picture, a
// control bar (mute, volume, the language menu behind a globe button, picture in
// picture, full screen) and the cards that stand in for the picture when there is
// nothing to show (before the start, off air, the speaker's connection lost).
//
// The player knows nothing of WebRTC: whatever brings the media (watch.js's peer
// connection, or another source such as HLS) gives it tracks through `player.video`,
// and hears the person's choices through the handlers passed to the constructor:
//   onPlay()                  the person pressed Play (a gesture: sound may start)
//   onChannel(code)           a channel chosen in the language menu ("original" or a language)
//   onOriginalUnder(volume)   0 = not under the interpretation, else 0..1
//   onAudioOnly(on), onSign(boothId | null), onVolume(volume 0..1, muted)
// and the page tells it what to show with setLanguages, setChannel, showCard, ...

import { formatDateTime, lang, t, visitorTimeZone } from "/static/common/i18n.js";
import { setOptions } from "./page.js";

export const ORIGINAL = "original";

/** Card name -> the element that shows it. */
const CARDS = { waiting: "waiting-card", "off-air": "off-air-card", "media-lost": "media-lost" };

export class Player {
  constructor(handlers) {
    this.handlers = handlers;
    this.root = document.getElementById("player");
    this.video = document.getElementById("program-video");
    this.signVideo = document.getElementById("sign-video");
    this.playButton = document.getElementById("play");
    this.muteButton = document.getElementById("mute");
    this.volume = document.getElementById("volume");
    this.menuButton = document.getElementById("language-button");
    this.menu = document.getElementById("language-menu");
    this.choice = document.getElementById("language-choice");
    this.current = document.getElementById("language-current");
    this.originalUnder = document.getElementById("original-under");
    this.originalVolume = document.getElementById("original-volume");
    this.audioOnly = document.getElementById("audio-only");
    this.signChoice = document.getElementById("sign-choice");
    this.pipButton = document.getElementById("pip");
    this.fullscreenButton = document.getElementById("fullscreen");
    this.channel = null;
    this.languages = [];
    this.countdownTimer = null;
    this.startsAt = null;
    this.clockOffsetMs = 0;
    this.wire();
  }

  wire() {
    this.playButton.addEventListener("click", () => {
      this.playButton.hidden = true;
      this.handlers.onPlay();
    });
    this.muteButton.addEventListener("click", () => {
      const muted = this.muteButton.getAttribute("aria-pressed") !== "true";
      this.muteButton.setAttribute("aria-pressed", String(muted));
      this.emitVolume();
    });
    this.volume.addEventListener("input", () => {
      if (Number(this.volume.value) > 0) this.muteButton.setAttribute("aria-pressed", "false");
      this.emitVolume();
    });
    this.menuButton.addEventListener("click", () => this.toggleMenu());
    document.getElementById("language-close").addEventListener("click", () => this.closeMenu(true));
    // Escape closes the menu and gives the focus back to its button, as menus do.
    this.menu.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        this.closeMenu(true);
      }
    });
    document.addEventListener("pointerdown", (event) => {
      if (!this.menu.hidden && !this.menu.contains(event.target) && !this.menuButton.contains(event.target)) {
        this.closeMenu(false);
      }
    });
    this.originalUnder.addEventListener("change", () => this.emitOriginal());
    this.originalVolume.addEventListener("input", () => this.emitOriginal());
    this.audioOnly.addEventListener("change", () => {
      this.video.hidden = this.audioOnly.checked;
      this.root.classList.toggle("audio-only", this.audioOnly.checked);
      this.handlers.onAudioOnly(this.audioOnly.checked);
    });
    this.signChoice.addEventListener("change", () => this.handlers.onSign(this.signChoice.value || null));
    this.fullscreenButton.addEventListener("click", () => this.toggleFullscreen());
    document.addEventListener("fullscreenchange", () => {
      this.fullscreenButton.setAttribute("aria-pressed", String(document.fullscreenElement === this.root));
    });
    if (document.pictureInPictureEnabled) {
      this.pipButton.hidden = false;
      this.pipButton.addEventListener("click", () => this.togglePictureInPicture());
    }
  }

  // --- what the person hears -------------------------------------------------------

  emitVolume() {
    const muted = this.muteButton.getAttribute("aria-pressed") === "true";
    this.handlers.onVolume(Number(this.volume.value) / 100, muted);
  }

  emitOriginal() {
    this.showOriginalVolume();
    this.handlers.onOriginalUnder(this.originalUnderVolume());
  }

  /** 0 when the original is not wanted under the interpretation, else its volume 0..1. */
  originalUnderVolume() {
    if (!this.originalUnder.checked) return 0;
    return Number(this.originalVolume.value) / 100;
  }

  // --- the language menu -----------------------------------------------------------

  /** The channels to offer: [{code, name, lang}] besides Original, each in its own name. */
  setLanguages(languages) {
    const options = [{ code: ORIGINAL, name: t("watch.original"), lang, describe: t("watch.original_described") }, ...languages];
    const signature = options.map((option) => option.code).join();
    if (signature === this.choice.dataset.signature) return;
    this.choice.dataset.signature = signature;
    this.languages = options;
    for (const old of this.choice.querySelectorAll(".language-option, .language-description")) old.remove();
    for (const option of options) {
      const label = document.createElement("label");
      label.className = "language-option";
      const input = document.createElement("input");
      input.type = "radio";
      input.name = "language";
      input.value = option.code;
      input.addEventListener("change", () => {
        if (input.checked) this.chooseChannel(option.code);
      });
      const text = document.createElement("span");
      text.textContent = option.name;
      text.lang = option.lang;
      label.append(input, text);
      this.choice.append(label);
      if (option.describe) {
        // Described, not named: the option stays "Original" for a screen reader's list.
        const description = document.createElement("span");
        description.className = "language-description";
        description.id = `language-${option.code}-description`;
        description.textContent = option.describe;
        input.setAttribute("aria-describedby", description.id);
        this.choice.append(description);
      }
    }
    this.setChannel(this.channel);
  }

  chooseChannel(code) {
    if (code === this.channel) return;
    this.setChannel(code);
    this.handlers.onChannel(code);
  }

  /** Shows `code` as the chosen channel (the server's word, or the person's). */
  setChannel(code) {
    this.channel = code;
    for (const input of this.choice.querySelectorAll("input[type=radio]")) input.checked = input.value === code;
    const option = this.languages.find((item) => item.code === code);
    this.current.textContent = option ? option.name : "";
    if (option) this.current.lang = option.lang;
    // Listening to the original already: nothing to put under it.
    this.originalUnder.disabled = code === ORIGINAL;
    this.showOriginalVolume();
  }

  showOriginalVolume() {
    document.getElementById("original-volume-row").hidden = !this.originalUnder.checked || this.channel === ORIGINAL;
  }

  toggleMenu() {
    if (this.menu.hidden) this.openMenu();
    else this.closeMenu(true);
  }

  openMenu() {
    this.menu.hidden = false;
    // Up over the picture when it has room there, else down over the page below it
    // (on a phone the stylesheet makes it a sheet at the bottom of the screen instead).
    const bar = this.menuButton.getBoundingClientRect();
    const up = bar.top > this.menu.offsetHeight + 8;
    this.menu.classList.toggle("up", up);
    this.menu.classList.toggle("down", !up);
    this.menuButton.setAttribute("aria-expanded", "true");
    const checked = this.choice.querySelector("input[type=radio]:checked") ?? this.choice.querySelector("input[type=radio]");
    checked?.focus();
  }

  closeMenu(returnFocus) {
    if (this.menu.hidden) return;
    this.menu.hidden = true;
    this.menuButton.setAttribute("aria-expanded", "false");
    if (returnFocus) this.menuButton.focus();
  }

  /** Sign booths to offer ([[id, name]]), and the one shown (or null). */
  setSignBooths(booths, shown, audioOnly) {
    const label = this.signChoice.closest("label");
    label.hidden = booths.length === 0;
    if (!booths.length) return;
    setOptions(this.signChoice, [["", t("watch.sign_none")], ...booths]);
    if (document.activeElement !== this.signChoice) this.signChoice.value = shown ?? "";
    this.signVideo.hidden = !shown || audioOnly;
  }

  // --- picture ---------------------------------------------------------------------

  async toggleFullscreen() {
    try {
      if (document.fullscreenElement) await document.exitFullscreen();
      else await this.root.requestFullscreen();
    } catch {
      // Refused by the browser (an iframe, a phone that only does it for <video>).
      this.video.webkitEnterFullscreen?.();
    }
  }

  async togglePictureInPicture() {
    try {
      if (document.pictureInPictureElement) await document.exitPictureInPicture();
      else await this.video.requestPictureInPicture();
    } catch {
      // No picture yet, or audio only: nothing to float.
    }
  }

  /**
   * Which card stands in for the picture: "waiting" (before the start), "off-air"
   * (nobody on air), "media-lost" (nothing arrives from the speaker), or null.
   */
  showCard(card) {
    if (this.root.dataset.card === (card ?? "")) return;
    this.root.dataset.card = card ?? "";
    for (const [name, id] of Object.entries(CARDS)) document.getElementById(id).hidden = name !== card;
    if (card === "waiting") this.startCountdown();
    else this.stopCountdown();
  }

  /** The waiting room's facts: the title, the start (an instant), the server clock's lead. */
  setWaiting(title, startsAtUtc, clockOffsetMs) {
    document.getElementById("waiting-title").textContent = title;
    this.clockOffsetMs = clockOffsetMs;
    if (startsAtUtc === this.startsAt) return;
    this.startsAt = startsAtUtc;
    const start = new Date(startsAtUtc);
    document.getElementById("waiting-start").textContent = t("watch.waiting_start", {
      time: formatDateTime(start),
      zone: visitorTimeZone(),
    });
    this.tick();
  }

  startCountdown() {
    if (this.countdownTimer !== null) return;
    this.tick();
    this.countdownTimer = setInterval(() => this.tick(), 1000);
  }

  stopCountdown() {
    clearInterval(this.countdownTimer);
    this.countdownTimer = null;
  }

  tick() {
    const target = document.getElementById("countdown");
    if (!this.startsAt) return;
    const left = (new Date(this.startsAt).getTime() - (Date.now() + this.clockOffsetMs)) / 1000;
    target.dataset.seconds = String(Math.max(0, Math.round(left)));
    target.textContent = left > 0 ? t("watch.countdown", { left: formatLeft(left) }) : t("watch.starting_soon");
  }
}

/** "2 d 04:12:55", "04:12:55" or "12:55": what is left before the start. */
export function formatLeft(seconds) {
  const whole = Math.max(0, Math.floor(seconds));
  const days = Math.floor(whole / 86400);
  const h = Math.floor((whole % 86400) / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = whole % 60;
  const pad = (n) => String(n).padStart(2, "0");
  const clock = h > 0 || days > 0 ? `${pad(h)}:${pad(m)}:${pad(s)}` : `${pad(m)}:${pad(s)}`;
  return days > 0 ? `${t("watch.days", { days })} ${clock}` : clock;
}
