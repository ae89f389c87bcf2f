// The console's WebSocket to the server (docs/protocol.md): authenticates with
// the page's token, reconnects by itself with exponential back-off, and tells
// the page each time it is welcomed again so that the page restores its media
// and its choices.

export const PROTOCOL_VERSION = 1;
const FIRST_DELAY_MS = 500;
// At most 4 s (5 s with the jitter) between attempts: a page is back within 5 s of its
// server answering again, and a room of pages retrying costs the server little.
const MAX_DELAY_MS = 4000;
// Closed by the server for good (docs/protocol.md): another page has this link's seat
// (4409), or the organizer revoked the link (4410). Retrying would only repeat it.
const FINAL_CLOSE_CODES = new Set([4409, 4410]);

export class Connection {
  /**
   * @param {object} options
   * @param {string} options.token  the personal or staff token from the link
   * @param {(welcome: object, again: boolean) => void} options.onWelcome
   * @param {(message: object) => void} options.onMessage
   * @param {(status: string, detail?: string) => void} options.onStatus
   *   status is one of "connecting", "online", "reconnecting", "refused" (then with the
   *   server's error code, for the page to say it in its language)
   */
  constructor({ token, onWelcome, onMessage, onStatus }) {
    this.token = token;
    this.onWelcome = onWelcome;
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    this.socket = null;
    this.delay = FIRST_DELAY_MS;
    this.welcomedBefore = false;
    this.closedForGood = false;
    this.retryTimer = null;
    // Set by claimSeat(): the next auth asks to take over the seat from another page.
    this.claiming = false;
    // The browser knows when its network is back: no point waiting out the back-off
    // (up to 5 s), the page's media is waiting for the socket to be restored.
    window.addEventListener("online", () => this.retryNow());
  }

  get url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/ws`;
  }

  start() {
    this.onStatus(this.welcomedBefore ? "reconnecting" : "connecting");
    let socket;
    try {
      socket = new WebSocket(this.url);
    } catch (error) {
      this.scheduleRetry();
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", () => {
      const auth = { type: "auth", v: PROTOCOL_VERSION, token: this.token };
      if (this.claiming) auth.claim = true;
      socket.send(JSON.stringify(auth));
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message.type === "seat_check") {
        // Still here: the server must not give this link's seat to another page.
        socket.send(JSON.stringify({ type: "seat_here", check: message.check }));
        return;
      }
      if (message.type === "welcome") {
        socket.welcomed = true;
        this.claiming = false;
        this.delay = FIRST_DELAY_MS;
        this.onStatus("online");
        const again = this.welcomedBefore;
        this.welcomedBefore = true;
        this.onWelcome(message, again);
        return;
      }
      if (message.type === "error" && !this.welcomedOnThisSocket(socket)) {
        // Refused before being welcomed: a bad or expired link (or a protocol
        // this page does not speak) will not get better by retrying.
        this.closedForGood = true;
        this.onStatus("refused", message.code);
        socket.close();
        return;
      }
      this.onMessage(message);
    });
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.closedForGood) return;
      if (FINAL_CLOSE_CODES.has(event.code)) {
        this.closedForGood = true;
        this.onStatus("refused", event.reason || undefined);
        return;
      }
      this.scheduleRetry();
    });
  }

  scheduleRetry() {
    this.onStatus("reconnecting");
    // Jitter keeps a room full of attendees from reconnecting in lockstep after a restart.
    const wait = this.delay * (0.75 + Math.random() * 0.5);
    this.delay = Math.min(this.delay * 2, MAX_DELAY_MS);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.start(), wait);
  }

  /** Connects again asking to take over this link's seat from the page that has it. */
  claimSeat() {
    if (this.socket !== null) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.closedForGood = false;
    this.claiming = true;
    this.delay = FIRST_DELAY_MS;
    this.start();
  }

  /** Gives up waiting for the seat: closing the socket withdraws the request; the page
   * stays refused (it may ask again). */
  giveUpClaim() {
    this.claiming = false;
    this.closedForGood = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const socket = this.socket;
    this.socket = null;
    socket?.close();
    this.onStatus("refused", "seat_taken");
  }

  /** Sends a message on the open socket, welcomed or not (the seat's answers). */
  sendNow(message) {
    const socket = this.socket;
    if (socket === null || socket.readyState !== WebSocket.OPEN) return false;
    socket.send(JSON.stringify(message));
    return true;
  }

  /** Reconnects at once if a retry is waiting. */
  retryNow() {
    if (this.socket !== null || this.closedForGood || this.retryTimer === null) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.delay = FIRST_DELAY_MS;
    this.start();
  }

  welcomedOnThisSocket(socket) {
    return socket.welcomed === true;
  }

  /** Sends a message once welcomed on the current socket; returns whether it was sent.
   * (Anything sent before the welcome would be refused as unauthenticated.) */
  send(message) {
    if (!this.online) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  get online() {
    const socket = this.socket;
    return socket !== null && socket.readyState === WebSocket.OPEN && socket.welcomed === true;
  }
}
