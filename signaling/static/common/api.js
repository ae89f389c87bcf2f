// Talking to the JSON HTTP API (docs/http-api.md). Every failure becomes an
// ApiError carrying the server's code, message and field, or code "network"
// when the server could not be reached at all.

export class ApiError extends Error {
  constructor(status, code, message, field = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

async function request(method, path, body) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch (error) {
    throw new ApiError(0, "network", String(error && error.message ? error.message : error));
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    const failure = new ApiError(
      response.status,
      error.code || "server",
      error.message || response.statusText,
      error.field || null,
    );
    // How long a rate limit lasts, so that the page can say it truthfully.
    const retryAfter = Number(response.headers.get("Retry-After"));
    if (Number.isFinite(retryAfter) && retryAfter > 0) failure.retryAfter = retryAfter;
    throw failure;
  }
  return data;
}

export function getJson(path) {
  return request("GET", path);
}

export function postJson(path, body) {
  return request("POST", path, body);
}

/** The event program (GET /api/event). */
export function fetchEvent() {
  return getJson("/api/event");
}

/** The token of this page's URL (?token=...), or null. */
export function pageToken() {
  return new URLSearchParams(window.location.search).get("token");
}
