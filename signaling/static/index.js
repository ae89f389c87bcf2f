// The event page is rendered by the server (signaling/event_page.py), program and all;
// this script only adds what the server cannot know: the start in the visitor's own
// time zone, when it differs from the venue's.
import { formatDateTime, t, visitorTimeZone } from "/static/common/i18n.js";

function addLocalTime() {
  const time = document.getElementById("event-time");
  const target = document.getElementById("local-time");
  if (!time || !target) return;
  const local = visitorTimeZone();
  if (!local || local === time.dataset.timezone) return;
  const start = new Date(time.getAttribute("datetime"));
  target.textContent = t("event.local_time", { time: formatDateTime(start, local), zone: local });
  target.dataset.timezone = local;
  target.hidden = false;
}

addLocalTime();
