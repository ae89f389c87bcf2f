// The registration form: POST /api/registrations, then the confirmation in place of the
// form (the personal link, a calendar entry, whether a mail went out), or the server's
// refusal next to the field it concerns, in the page's language.
import { ApiError, fetchEvent, postJson } from "/static/common/api.js";
import { clear, el } from "/static/common/dom.js";
import { formatDateTime, has, lang, localized, t, visitorTimeZone } from "/static/common/i18n.js";

const FIELDS = ["name", "email", "language"];
const languageNames = {};
const NAME_MAX = 200;

const form = document.getElementById("register-form");
const formPart = document.getElementById("form-part");
const submit = form.querySelector("button[type=submit]");
const status = document.getElementById("form-status");
const formError = document.getElementById("form-error");
let event = null;

function fillLanguages(program) {
  const select = clear(document.getElementById("language"));
  // The page's language is the likeliest choice when the event offers it; otherwise the
  // person is asked, rather than handed the first language of the program.
  const preferred = program.languages.find((item) => item.code === lang);
  if (!preferred) select.append(el("option", { value: "" }, t("register.choose_language")));
  for (const language of program.languages) {
    languageNames[language.code] = language.name;
    select.append(el("option", { value: language.code, lang: language.code }, language.name));
  }
  select.value = preferred ? preferred.code : "";
}

function clearErrors() {
  for (const field of FIELDS) {
    const input = document.getElementById(field);
    input.removeAttribute("aria-invalid");
    const message = document.getElementById(`${field}-error`);
    message.textContent = "";
    message.hidden = true;
  }
  formError.textContent = "";
  formError.hidden = true;
}

function messageFor(error) {
  if (error.code === "rate_limited") {
    const minutes = Math.max(1, Math.ceil((error.retryAfter ?? 600) / 60));
    const key = error.field === "email" ? "errors.rate_limited_email" : "errors.rate_limited_client";
    return t(key, { minutes });
  }
  const key = `errors.${error.code}`;
  if (error.code === "too_long") return t(key, { max: NAME_MAX });
  if (has(key)) return t(key);
  return t("errors.server");
}

function showError(error) {
  if (error.field && FIELDS.includes(error.field)) {
    const input = document.getElementById(error.field);
    input.setAttribute("aria-invalid", "true");
    const message = document.getElementById(`${error.field}-error`);
    message.textContent = messageFor(error);
    message.hidden = false;
    formError.textContent = error.code === "rate_limited" ? messageFor(error) : t("register.problem");
    formError.hidden = false;
    input.focus();
  } else {
    formError.textContent = messageFor(error);
    formError.hidden = false;
  }
}

function showResult(body, email) {
  const result = document.getElementById("result");
  const heading = document.getElementById("result-heading");
  const registeredAs = document.getElementById("registered-as");
  const mailStatus = document.getElementById("mail-status");
  const linkPart = document.getElementById("link-part");
  heading.textContent = body.created ? t("register.created") : t("register.existing");
  const registration = body.registration;
  if (registration) {
    registeredAs.textContent = t("register.registered_as", {
      name: registration.name,
      email: registration.email,
      language: languageNames[registration.language] || registration.language,
    });
  } else {
    registeredAs.textContent = t("register.existing_mailed", { email: body.email ?? email });
  }
  const starts = document.getElementById("starts-local");
  starts.textContent = event
    ? t("register.starts", { time: formatDateTime(new Date(event.starts_at_utc)), zone: visitorTimeZone() })
    : "";
  linkPart.hidden = !body.link;
  if (body.link) {
    const link = document.getElementById("personal-link");
    link.href = body.link;
    link.textContent = t("register.open_link");
    link.dataset.link = body.link;
    const token = new URL(body.link).searchParams.get("token");
    document.getElementById("calendar-link").href = `/calendar.ics?token=${encodeURIComponent(token)}&lang=${lang}`;
  }
  if (!body.link) mailStatus.textContent = t("register.check_mail");
  else if (body.mailed) mailStatus.textContent = t("register.mailed", { email: registration.email });
  else mailStatus.textContent = "";
  // The filled form is gone: the confirmation replaces it.
  formPart.hidden = true;
  result.hidden = false;
  heading.focus();
}

form.addEventListener("submit", async (submitEvent) => {
  submitEvent.preventDefault();
  clearErrors();
  submit.disabled = true;
  status.textContent = t("register.sending");
  const data = Object.fromEntries(FIELDS.map((field) => [field, form.elements[field].value]));
  data.timezone = visitorTimeZone();
  try {
    const body = await postJson("/api/registrations", data);
    status.textContent = "";
    showResult(body, data.email);
  } catch (error) {
    status.textContent = "";
    showError(error instanceof ApiError ? error : new ApiError(0, "server", String(error)));
  } finally {
    submit.disabled = false;
  }
});

document.getElementById("copy-link").addEventListener("click", async () => {
  const link = document.getElementById("personal-link").dataset.link;
  try {
    await navigator.clipboard.writeText(link);
    document.getElementById("copy-status").textContent = t("register.copied");
  } catch {
    document.getElementById("copy-status").textContent = link;
  }
});

document.getElementById("register-another").addEventListener("click", () => {
  form.reset();
  if (event) fillLanguages(event);
  clearErrors();
  document.getElementById("result").hidden = true;
  document.getElementById("copy-status").textContent = "";
  formPart.hidden = false;
  document.getElementById("name").focus();
});

fetchEvent()
  .then((program) => {
    event = program;
    document.getElementById("event-title").textContent = localized(program.title);
    fillLanguages(program);
  })
  .catch(() => {
    formError.textContent = t("page.load_failed");
    formError.hidden = false;
  });
