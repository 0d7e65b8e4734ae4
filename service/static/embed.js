/* The one-tag drop-in: makes an existing form (Webflow, plain HTML) post to Intake.
 *
 *   <script src="https://intake.example.org/static/embed.js" data-form="contact" defer></script>
 *
 * Attributes of this script tag (all optional):
 *   data-form      the form's name in our configuration (default "contact");
 *   data-endpoint  the full URL to post to (default: this script's origin + /f/<data-form>);
 *   data-selector  which forms to take over (default: ".w-form form, form[data-intake-embed]");
 *                  a form whose action already points at this origin's /f/... is always taken.
 * It loads form.js from beside itself, which posts with fetch + Accept: application/json,
 * toggles Webflow's .w-form-done / .w-form-fail blocks, shows field errors beside the fields,
 * disables the button while sending and keeps what was typed when the network fails.
 * Field names are matched to ours loosely ("Email", "Phone Number", "Full Name", "Email 2" work);
 * any field can name its target with data-intake-name="...".
 */
(function () {
  "use strict";

  var script = document.currentScript ||
    document.querySelector('script[src$="/static/embed.js"], script[src*="/static/embed.js?"]');
  if (!script || !script.src || !window.fetch || !window.URLSearchParams) return;
  var source = new URL(script.src, document.baseURI);
  var formName = script.getAttribute("data-form") || "contact";
  var endpoint = script.getAttribute("data-endpoint") ||
    source.origin + "/f/" + encodeURIComponent(formName);
  var selector = script.getAttribute("data-selector") || ".w-form form, form[data-intake-embed]";

  var KNOWN = [
    "name", "first_name", "last_name", "email", "phone", "for_whom", "preferred_contact",
    "best_time", "voicemail_ok", "text_ok", "email_ok", "state", "insurance",
    "insurance_member_id", "program", "message", "consent"
  ];
  var ALIASES = {
    full_name: "name", your_name: "name", fname: "first_name", firstname: "first_name",
    lname: "last_name", lastname: "last_name", surname: "last_name",
    email_address: "email", e_mail: "email", your_email: "email", mail: "email",
    phone_number: "phone", telephone: "phone", tel: "phone", mobile: "phone", cell: "phone",
    your_phone: "phone", comments: "message", comment: "message", your_message: "message",
    how_can_we_help: "message", insurance_provider: "insurance", insurance_carrier: "insurance",
    agree: "consent", consent_to_contact: "consent"
  };

  function fieldName(element) {
    var chosen = element.getAttribute("data-intake-name");
    if (chosen) return chosen;
    var name = element.name;
    if (name.charAt(0) === "_" || /-response$/.test(name)) return name;
    var key = name.trim().toLowerCase().replace(/[\s\-]+/g, "_").replace(/_\d+$/, "");
    if (KNOWN.indexOf(key) >= 0) return key;
    return ALIASES[key] || name;
  }

  function postsToUs(form) {
    var action = form.getAttribute("action");
    if (!action) return false;
    var url = new URL(action, document.baseURI);
    return url.origin === source.origin && url.pathname.indexOf("/f/") === 0;
  }

  function start() {
    var forms = Array.prototype.slice.call(document.querySelectorAll(selector));
    Array.prototype.forEach.call(document.forms, function (form) {
      if (postsToUs(form) && forms.indexOf(form) < 0) forms.push(form);
    });
    forms.forEach(function (form) {
      window.IntakeForms.enhance(form, {
        endpoint: postsToUs(form) ? new URL(form.getAttribute("action"), document.baseURI).href : endpoint,
        rename: fieldName
      });
    });
  }

  function whenReady(callback) {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", callback);
    else callback();
  }

  if (window.IntakeForms) {
    whenReady(start);
    return;
  }
  var engine = document.createElement("script");
  engine.src = new URL("form.js", source).href;
  engine.onload = function () { whenReady(start); };
  (document.head || document.documentElement).appendChild(engine);
})();
