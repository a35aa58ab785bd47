// The dashboard's glue, on top of htmx: forms and buttons send JSON to the API's own routes
// (extension "nebula-json"), their answers are shown in the page's status line, and the pages'
// live parts are fetched again when the daemon's event stream says something happened.
(function () {
  "use strict";
  let api = null;

  // Fields named "group.key" go into {"group": {"key": ...}} (an install's values), "key[]"
  // into a list (its grants); empty fields are left out, so the route's defaults apply.
  htmx.defineExtension("nebula-json", {
    init: function (internal) { api = internal; },
    onEvent: function (name, evt) {
      if (name === "htmx:configRequest") {
        evt.detail.headers["Content-Type"] = "application/json";
      }
    },
    encodeParameters: function (xhr, parameters, elt) {
      xhr.overrideMimeType("text/json");
      const body = {};
      parameters.forEach(function (value, key) {
        if (value === "") return;
        if (key.endsWith("[]")) {
          const list = key.slice(0, -2);
          (body[list] = body[list] || []).push(value);
          return;
        }
        const dot = key.indexOf(".");
        if (dot > 0) {
          const group = key.slice(0, dot);
          (body[group] = body[group] || {})[key.slice(dot + 1)] = value;
        } else {
          body[key] = value;
        }
      });
      Object.assign(body, api.getExpressionVars(elt));  // hx-vals keep their JSON types
      return JSON.stringify(body);
    },
  });

  function say(text, isError) {
    const line = document.getElementById("message");
    line.textContent = text;
    line.className = isError ? "bad" : "";
    line.setAttribute("role", isError ? "alert" : "status");
  }

  document.addEventListener("htmx:afterRequest", function (evt) {
    const elt = evt.detail.elt;
    if (evt.detail.requestConfig.verb === "get") return;
    const xhr = evt.detail.xhr;
    if (evt.detail.successful) {
      const then = elt.getAttribute("data-then");
      if (then) { window.location.assign(then); return; }
      say(elt.getAttribute("data-done") || "Done.", false);
      return;
    }
    let error = "";
    try { error = JSON.parse(xhr.responseText).error || ""; } catch (e) { error = ""; }
    say(error || "The request failed (HTTP " + xhr.status + ").", true);
  });

  // The login page: a session that only needs its access token renewed goes straight back.
  function renew(form) {
    fetch("/api/v1/auth/refresh", {
      method: "POST", headers: {"Content-Type": "application/json"}, body: "{}",
      credentials: "same-origin",
    }).then(function (answer) {
      if (answer.ok) window.location.assign(form.getAttribute("data-refresh"));
    }).catch(function () {});
  }

  // Live parts: fetched again (hx-trigger "nebula-event from:body") on the daemon's events.
  const KINDS = ["sync_started", "sync_finished", "sync_held", "suspended", "resumed",
    "rollback", "health"];

  function listen() {
    const source = new EventSource("/api/v1/events");
    KINDS.forEach(function (kind) {
      source.addEventListener(kind, function () { htmx.trigger(document.body, "nebula-event"); });
    });
    // EventSource reconnects by itself after a daemon restart; the page then catches up.
    source.addEventListener("open", function () { htmx.trigger(document.body, "nebula-event"); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    const login = document.querySelector("form[data-refresh]");
    if (login) renew(login);
    if (document.body.hasAttribute("data-live")) listen();
  });
})();
