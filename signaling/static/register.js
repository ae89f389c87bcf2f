// The registration form: POST /api/registrations, the personal link on
// success, the server's refusal shown next to the field it concerns.
import { ApiError, fetchEvent, postJson } from "/static/common/api.js";
import { clear, el } from "/static/common/dom.js";
import { has, lang, localized, t } from "/static/common/i18n.js";

const FIELDS = ["name", "email", "language"];
const languageNames = {};
const NAME_MAX = 200;

const form = document.getElementById("register-form");
const submit = form.querySelector("button[type=submit]");
const status = document.getElementById("form-status");
const formError = document.getElementById("form-error");

function fillLanguages(event) {
  const select = clear(document.getElementById("language"));
  for (const language of event.languages) {
    languageNames[language.code] = language.name;
    select.append(el("option", { value: language.code, lang: language.code }, language.name));
  }
  // The UI language is the likeliest choice when the event offers it.
  const preferred = event.languages.find((item) => item.code === lang);
  select.value = preferred ? preferred.code : event.languages[0].code;
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
  const key = `errors.${error.code}`;
  if (error.code === "too_long") return t(key, { max: NAME_MAX });
  if (has(key)) return t(key);
  return error.message || t("errors.server");
}

function showError(error) {
  if (error.field && FIELDS.includes(error.field)) {
    const input = document.getElementById(error.field);
    input.setAttribute("aria-invalid", "true");
    const message = document.getElementById(`${error.field}-error`);
    message.textContent = messageFor(error);
    message.hidden = false;
    formError.textContent = t("register.problem");
    formError.hidden = false;
    input.focus();
  } else {
    formError.textContent = messageFor(error);
    formError.hidden = false;
  }
}

function showResult(body, languageNames) {
  const result = document.getElementById("result");
  const heading = document.getElementById("result-heading");
  heading.textContent = body.created ? t("register.created") : t("register.existing");
  const registration = body.registration;
  document.getElementById("registered-as").textContent = t("register.registered_as", {
    name: registration.name,
    email: registration.email,
    language: languageNames[registration.language] || registration.language,
  });
  const link = document.getElementById("personal-link");
  link.href = body.link;
  link.textContent = body.link;
  result.hidden = false;
  heading.focus();
}

form.addEventListener("submit", async (submitEvent) => {
  submitEvent.preventDefault();
  clearErrors();
  submit.disabled = true;
  status.textContent = t("register.sending");
  const data = Object.fromEntries(FIELDS.map((field) => [field, form.elements[field].value]));
  try {
    const body = await postJson("/api/registrations", data);
    status.textContent = "";
    showResult(body, languageNames);
  } catch (error) {
    status.textContent = "";
    showError(error instanceof ApiError ? error : new ApiError(0, "server", String(error)));
  } finally {
    submit.disabled = false;
  }
});

document.getElementById("copy-link").addEventListener("click", async () => {
  const link = document.getElementById("personal-link").textContent;
  try {
    await navigator.clipboard.writeText(link);
    document.getElementById("copy-status").textContent = t("register.copied");
  } catch {
    window.getSelection().selectAllChildren(document.getElementById("personal-link"));
  }
});

fetchEvent()
  .then((event) => {
    document.getElementById("event-title").textContent = localized(event.title);
    fillLanguages(event);
  })
  .catch(() => {
    formError.textContent = t("page.load_failed");
    formError.hidden = false;
  });
