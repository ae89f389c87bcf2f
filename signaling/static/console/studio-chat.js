// The studio's side of the booth chat: one thread per booth ("studio:<booth>"),
// each with its unread count, and the total in the section's heading so the
// moderator sees a booth's message whatever thread is open.

import { ChatPanel } from "./chat.js";
import { t } from "/static/common/i18n.js";

export function studioChat(connectionOf) {
  const badge = document.getElementById("chat-unread");
  const panel = new ChatPanel(document.getElementById("chat"), {
    send: (message) => connectionOf()?.send(message) ?? false,
    who: (sender, role) => (role === "moderator" ? t("chat.studio") : sender),
    onUnread: () => {
      const count = panel.totalUnread();
      badge.hidden = count === 0;
      badge.textContent = t("chat.unread", { count });
    },
  });
  return {
    welcome(welcome) {
      const booths = welcome.event?.booths ?? [];
      panel.setThreads(
        booths.map((booth) => ({ id: `studio:${booth.id}`, label: booth.name })),
        welcome.scope?.subject ?? "",
      );
    },
    receive(message) {
      panel.receive(message);
    },
    panel,
  };
}
