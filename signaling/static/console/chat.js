// The booth chat (docs/protocol.md, `chat_send` and `chat`): one panel with a
// button per thread (the booth partners, the studio; in the studio, one per
// booth), each with its count of unread messages, the messages of the chosen
// thread and a box to write in. Every text is shown as text, never as HTML.
// What was read is remembered per thread in the browser, by the last message
// number seen.

import { element } from "./page.js";
import { t } from "/static/common/i18n.js";

export const CHAT_MAX_CHARS = 500;

export class ChatPanel {
  /**
   * @param {HTMLElement} root  an empty element the panel fills
   * @param {object} options
   * @param {(message: object) => boolean} options.send  sends a protocol message
   * @param {(sender: string, role: string) => string} options.who  how to name a sender
   * @param {() => void} [options.onUnread]  called when the unread counts change
   */
  constructor(root, { send, who, onUnread = () => {} }) {
    this.root = root;
    this.send = send;
    this.who = who;
    this.onUnread = onUnread;
    this.threads = []; // [{id, label}]
    this.messages = new Map(); // thread -> [message]
    this.current = null;
    this.me = "";
    this.tabs = element("div", { class: "chat-threads" });
    this.log = element("ol", { class: "chat-log", "aria-live": "polite", "aria-label": t("chat.messages") });
    this.text = element("textarea", {
      class: "chat-text",
      rows: "2",
      maxlength: String(CHAT_MAX_CHARS),
      "aria-label": t("chat.message"),
    });
    this.sendButton = element("button", { type: "button", class: "chat-send", text: t("chat.send") });
    this.form = element("div", { class: "chat-form" }, this.text, this.sendButton);
    root.replaceChildren(this.tabs, this.log, this.form);
    this.sendButton.addEventListener("click", () => this.submit());
    this.text.addEventListener("keydown", (event) => {
      // Enter sends, Shift+Enter starts a new line (as in every chat).
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    });
    document.addEventListener("visibilitychange", () => this.markRead());
  }

  /** The threads this person may read: [{id, label}]; the first is shown first. */
  setThreads(threads, me) {
    this.me = me ?? "";
    const signature = threads.map((thread) => `${thread.id}:${thread.label}`).join("|");
    if (signature === this.signature) return;
    this.signature = signature;
    this.threads = threads;
    if (!threads.some((thread) => thread.id === this.current)) this.current = threads[0]?.id ?? null;
    this.render();
  }

  /** A `chat` message from the server. */
  receive(message) {
    if (message.history) this.messages.clear();
    for (const item of message.messages ?? []) {
      const list = this.messages.get(item.thread) ?? [];
      if (!list.some((known) => known.seq === item.seq)) list.push(item);
      list.sort((a, b) => a.seq - b.seq);
      this.messages.set(item.thread, list);
    }
    this.render();
  }

  submit() {
    const text = this.text.value.trim();
    if (!text || !this.current) return;
    // The server refuses an oversized or flooding message with a sentence; the text
    // stays in the box until it is accepted, so nothing typed is lost.
    if (this.send({ type: "chat_send", thread: this.current, text })) this.pending = text;
  }

  /** The count of messages from others above the last one seen, for one thread. */
  unread(thread) {
    const read = Number(localStorage.getItem(this.readKey(thread)) ?? 0);
    return (this.messages.get(thread) ?? []).filter((item) => item.seq > read && item.sender !== this.me).length;
  }

  totalUnread() {
    return this.threads.reduce((sum, thread) => sum + this.unread(thread.id), 0);
  }

  readKey(thread) {
    return `dragoman.chat.read.${this.me}.${thread}`;
  }

  markRead() {
    if (!this.current || document.visibilityState !== "visible") return;
    const list = this.messages.get(this.current) ?? [];
    if (!list.length) return;
    const last = list[list.length - 1].seq;
    if (Number(localStorage.getItem(this.readKey(this.current)) ?? 0) < last) {
      localStorage.setItem(this.readKey(this.current), String(last));
      this.renderTabs();
    }
  }

  render() {
    // A message of ours came back: it was accepted, so the box can be emptied.
    const mine = [...this.messages.values()].flat().filter((item) => item.sender === this.me);
    if (this.pending && mine.some((item) => item.text === this.pending)) {
      if (this.text.value.trim() === this.pending) this.text.value = "";
      this.pending = null;
    }
    this.renderLog();
    this.markRead();
    this.renderTabs();
  }

  renderTabs() {
    const buttons = this.threads.map((thread) => {
      const count = this.unread(thread.id);
      const button = element(
        "button",
        {
          type: "button",
          class: "chat-thread",
          "aria-pressed": String(thread.id === this.current),
          "data-thread": thread.id,
        },
        element("span", { text: thread.label }),
        count ? element("span", { class: "unread", text: t("chat.unread", { count }) }) : null,
      );
      button.addEventListener("click", () => {
        this.current = thread.id;
        this.render();
        this.text.focus();
      });
      return button;
    });
    this.tabs.replaceChildren(...buttons);
    this.onUnread();
  }

  renderLog() {
    const list = this.messages.get(this.current) ?? [];
    const items = list.map((item) =>
      element(
        "li",
        { class: item.sender === this.me ? "chat-item mine" : "chat-item", "data-seq": String(item.seq) },
        element("span", { class: "chat-meta", text: `${clock(item.at)} ${this.who(item.sender, item.role)}` }),
        // textContent: whatever a message holds, it is shown as the characters typed.
        element("span", { class: "chat-body", text: item.text }),
      ),
    );
    if (!items.length) items.push(element("li", { class: "chat-empty", text: t("chat.empty") }));
    this.log.replaceChildren(...items);
    this.log.scrollTop = this.log.scrollHeight;
  }
}

function clock(seconds) {
  const date = new Date(seconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${pad(date.getHours())}:${pad(date.getMinutes())}`;
}
