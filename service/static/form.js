/* Intake forms, progressively enhanced: post with fetch, show the answer in place.
 *
 * Our own form page loads this file; /static/embed.js loads it into other sites' pages (Webflow,
 * plain HTML). Without it a form still posts the ordinary way, so nothing here is load-bearing.
 * What it does on submit:
 *   - posts the form's fields (url-encoded) with Accept: application/json;
 *   - disables the submit button meanwhile (showing its data-wait text, as Webflow does);
 *   - on success hides the form and shows the .w-form-done block (or follows data-redirect);
 *   - on failure shows the .w-form-fail block and each field's error beside the field, tied to it
 *     with aria-describedby; after a network failure everything typed is still there.
 * Error slots: a field X inside [data-field="X"] with a #f-X-error element uses that element (our
 * page); otherwise a <p class="intake-error"> is added after the field. A [data-group-fields]
 * container shows once an error that all of its fields share.
 * API: window.IntakeForms.enhance(form, {endpoint, rename(element) -> field name, language}).
 * No build step, no framework, no inline code: it runs under a strict Content-Security-Policy.
 */
(function () {
  "use strict";

  var TEXT = {
    en: {
      network: "We could not reach our server. What you typed is still here: please try again in a moment.",
      invalid: "Please check the marked fields and try again."
    },
    es: {
      network: "No pudimos comunicarnos con nuestro servidor. Lo que escribió sigue aquí: inténtelo de nuevo en un momento.",
      invalid: "Por favor, revise los campos marcados e inténtelo de nuevo."
    }
  };
  var OUR_ERROR_ID = /^(f-.+-error|intake-error-\d+)$/;
  var SKIPPED_TYPES = ["submit", "button", "reset", "image", "file"];
  var counter = 0;

  function pageLanguage(form) {
    var lang = (form.closest("[lang]") || document.documentElement).getAttribute("lang") || "en";
    lang = lang.slice(0, 2).toLowerCase();
    return TEXT[lang] ? lang : "en";
  }

  function readMessages(form) {
    var id = form.getAttribute("data-messages");
    var element = id && document.getElementById(id);
    if (!element) return {};
    try {
      return JSON.parse(element.textContent) || {};
    } catch (ignored) {
      return {};
    }
  }

  function show(element, visible) {
    if (!element) return;
    element.hidden = !visible;
    element.style.display = visible ? "block" : "none";
  }

  function addToken(element, attribute, token) {
    var tokens = (element.getAttribute(attribute) || "").split(/\s+/).filter(Boolean);
    if (tokens.indexOf(token) < 0) tokens.push(token);
    element.setAttribute(attribute, tokens.join(" "));
  }

  function enhance(form, options) {
    if (form.getAttribute("data-intake-enhanced")) return;
    form.setAttribute("data-intake-enhanced", "1");
    options = options || {};
    var endpoint = options.endpoint || form.action;
    var rename = options.rename || function (element) { return element.name; };
    var language = options.language || pageLanguage(form);
    var box = form.closest(".w-form") || form.parentElement;
    var done = box.querySelector(".w-form-done");
    var fail = box.querySelector(".w-form-fail");
    var messages = readMessages(form);
    var busy = false;

    // Caught on the way down, at the window: this runs before any other handler, on the form or
    // delegated to the document (webflow.js), and stopping it there keeps those from posting
    // the form somewhere else as well.
    window.addEventListener("submit", function (event) {
      if (event.target !== form) return;
      event.preventDefault();
      event.stopImmediatePropagation();
      if (!busy) send();
    }, true);

    function controls() {
      var found = [];
      Array.prototype.forEach.call(form.elements, function (element) {
        var type = (element.type || "").toLowerCase();
        if (!element.name || element.disabled || SKIPPED_TYPES.indexOf(type) >= 0) return;
        if (element.tagName === "FIELDSET" || element.tagName === "OUTPUT") return;
        found.push(element);
      });
      return found;
    }

    function body() {
      var params = new URLSearchParams();
      controls().forEach(function (element) {
        var type = (element.type || "").toLowerCase();
        if ((type === "checkbox" || type === "radio") && !element.checked) return;
        var name = rename(element);
        if (element.tagName === "SELECT" && element.multiple) {
          Array.prototype.forEach.call(element.selectedOptions, function (option) {
            params.append(name, option.value);
          });
        } else {
          params.append(name, element.value);
        }
      });
      if (!params.has("_language")) params.append("_language", language);
      return params;
    }

    function setBusy(on) {
      busy = on;
      form.setAttribute("aria-busy", on ? "true" : "false");
      var buttons = form.querySelectorAll("button[type=submit], button:not([type]), input[type=submit]");
      Array.prototype.forEach.call(buttons, function (button) {
        var isInput = button.tagName === "INPUT";
        var wait = button.getAttribute("data-wait");
        if (on) {
          button.setAttribute("data-intake-label", isInput ? button.value : button.textContent);
          if (wait) {
            if (isInput) button.value = wait; else button.textContent = wait;
          }
        } else if (button.hasAttribute("data-intake-label")) {
          if (isInput) button.value = button.getAttribute("data-intake-label");
          else button.textContent = button.getAttribute("data-intake-label");
        }
        button.disabled = on;
      });
    }

    function send() {
      var payload = body();
      setBusy(true);
      clearErrors();
      show(done, false);
      show(fail, false);
      fetch(endpoint, {
        method: "POST",
        body: payload,
        headers: { Accept: "application/json" },
        credentials: "omit"
      }).then(function (response) {
        return response.json().then(
          function (data) { return { ok: response.ok, data: data }; },
          function () { return { ok: response.ok, data: null }; }
        );
      }).then(function (answer) {
        setBusy(false);
        if (answer.ok && answer.data && answer.data.ok) {
          succeeded();
        } else {
          failed((answer.data && answer.data.errors) || [], false);
        }
      }, function () {
        setBusy(false);
        failed([], true);
      });
    }

    function succeeded() {
      var redirect = form.getAttribute("data-redirect") || form.getAttribute("redirect");
      if (redirect) {
        window.location.assign(redirect);
        return;
      }
      show(form, false);
      show(done, true);
      if (done) done.focus();
    }

    function failed(errors, network) {
      var general = [];
      var first = showErrors(errors, general);
      var detail = failDetail();
      if (detail) {
        var text = network
          ? detail.getAttribute("data-network") || TEXT[language].network
          : general.length ? general.join(" ") : first ? detail.getAttribute("data-invalid") || TEXT[language].invalid : "";
        detail.textContent = text;
      }
      show(fail, true);
      if (first) first.focus();
      else if (fail) fail.focus();
    }

    function failDetail() {
      if (!fail) return null;
      var detail = fail.querySelector("[data-fail-detail]");
      if (!detail) {
        detail = document.createElement("p");
        detail.className = "intake-fail-detail";
        detail.setAttribute("data-fail-detail", "");
        fail.appendChild(detail);
      }
      return detail;
    }

    function fieldsNamed(name) {
      return controls().filter(function (element) { return rename(element) === name; });
    }

    function message(error, field) {
      return messages[field + ":" + error.code] || messages[error.code] || error.message || "";
    }

    // Shows each field's first error; returns the first control to focus. Errors that belong to
    // no field on this form are added to `general`.
    function showErrors(errors, general) {
      var byField = {};
      var order = [];
      errors.forEach(function (error) {
        var field = error.field === "_replyto" && !fieldsNamed("_replyto").length ? "email" : error.field;
        if (!byField[field]) { byField[field] = error; order.push(field); }
      });
      Array.prototype.forEach.call(form.querySelectorAll("[data-group-fields]"), function (group) {
        var members = group.getAttribute("data-group-fields").split(/\s+/);
        var texts = members.map(function (m) { return byField[m] ? message(byField[m], m) : null; });
        var shared = texts.every(function (t) { return t !== null && t === texts[0]; });
        var slot = group.querySelector("#f-" + group.getAttribute("data-field") + "-error");
        if (!shared || !slot) return;
        var groupError = byField[members[0]];
        members.forEach(function (m) { delete byField[m]; });
        var text = messages[group.getAttribute("data-field") + ":" + groupError.code] || texts[0];
        fill(slot, text);
        group.classList.add("has-error");
        members.forEach(function (m) {
          fieldsNamed(m).forEach(function (element) { mark(element, slot.id); });
        });
      });
      var first = null;
      var all = controls();
      order.forEach(function (field) {
        var error = byField[field];
        if (!error) return;
        var elements = fieldsNamed(field);
        if (!elements.length) {
          if (error.message) general.push(message(error, field));
          return;
        }
        var slot = slotFor(field, elements);
        fill(slot, message(error, field));
        elements.forEach(function (element) { mark(element, slot.id); });
      });
      all.forEach(function (element) {
        var ids = (element.getAttribute("aria-describedby") || "").split(/\s+/);
        if (!first && ids.some(function (id) { return OUR_ERROR_ID.test(id); })) first = element;
      });
      return first;
    }

    function slotFor(field, elements) {
      var container = form.querySelector('[data-field="' + cssEscape(field) + '"]');
      var slot = container && container.querySelector("#f-" + cssEscape(field) + "-error");
      if (slot) {
        container.classList.add("has-error");
        return slot;
      }
      slot = document.createElement("p");
      slot.className = "intake-error";
      slot.id = "intake-error-" + (++counter);
      var last = elements[elements.length - 1];
      var anchor = last.closest("label") || last;
      if (anchor.nextElementSibling && anchor.nextElementSibling.tagName === "LABEL" &&
          anchor.nextElementSibling.getAttribute("for") === last.id) {
        anchor = anchor.nextElementSibling;
      }
      anchor.insertAdjacentElement("afterend", slot);
      return slot;
    }

    function fill(slot, text) {
      var target = slot.querySelector("[data-error-text]") || slot;
      target.textContent = text;
      slot.hidden = false;
      slot.style.display = "";
    }

    function mark(element, slotId) {
      var type = (element.type || "").toLowerCase();
      addToken(element, "aria-describedby", slotId);
      if (type !== "radio") element.setAttribute("aria-invalid", "true");
    }

    function clearErrors() {
      var summary = document.querySelector("[data-error-summary]");
      if (summary) show(summary, false);
      Array.prototype.forEach.call(form.querySelectorAll(".intake-error"), function (slot) {
        slot.parentNode.removeChild(slot);
      });
      Array.prototype.forEach.call(form.querySelectorAll(".field-error"), function (slot) {
        var target = slot.querySelector("[data-error-text]") || slot;
        target.textContent = "";
        slot.hidden = true;
      });
      Array.prototype.forEach.call(form.querySelectorAll(".has-error"), function (element) {
        element.classList.remove("has-error");
      });
      Array.prototype.forEach.call(form.querySelectorAll("[aria-describedby]"), function (element) {
        var kept = element.getAttribute("aria-describedby").split(/\s+/).filter(function (id) {
          return id && !OUR_ERROR_ID.test(id);
        });
        if (kept.length) element.setAttribute("aria-describedby", kept.join(" "));
        else element.removeAttribute("aria-describedby");
      });
      Array.prototype.forEach.call(form.querySelectorAll("[aria-invalid]"), function (element) {
        element.removeAttribute("aria-invalid");
      });
    }
  }

  function cssEscape(text) {
    return window.CSS && CSS.escape ? CSS.escape(text) : text.replace(/[^A-Za-z0-9_-]/g, "\\$&");
  }

  window.IntakeForms = { enhance: enhance };

  function enhanceOurForms() {
    Array.prototype.forEach.call(document.querySelectorAll("form[data-intake]"), function (form) {
      enhance(form, {});
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", enhanceOurForms);
  } else {
    enhanceOurForms();
  }
})();
