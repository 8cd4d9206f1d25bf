// The reset link is /reset-password#token=...: the token is in the fragment, which the browser never sends to
// the server, so it reaches no access log, proxy log or Referer. It is read here, removed from the address
// bar and history at once, and posted in a JSON body.
(function () {
  "use strict";
  var token = new URLSearchParams(window.location.hash.slice(1)).get("token");
  if (window.location.hash) {
    window.history.replaceState(null, "", window.location.pathname);
  }
  function start() {
    var form = document.getElementById("reset-form");
    var message = document.getElementById("message");
    function say(text, ok) {
      message.textContent = text;
      message.className = ok ? "ok" : "error";
    }
    if (!token) {
      form.hidden = true;
      say("This link has no reset token: ask for a new reset mail.", false);
      return;
    }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var password = form.elements.password.value;
      if (password !== form.elements.confirm.value) {
        say("The two passwords differ.", false);
        return;
      }
      fetch("api/auth/password-reset/confirm", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token: token, new_password: password }),
        credentials: "omit",
        cache: "no-store",
        referrerPolicy: "no-referrer",
      })
        .then(function (response) {
          return response.json().then(function (body) {
            return { ok: response.ok, body: body };
          });
        })
        .then(function (result) {
          if (result.ok) {
            form.hidden = true;
            token = null;
            say("Your password was changed; every other session was logged out. You can log in now.", true);
            return;
          }
          var error = result.body.error || {};
          var fields = error.fields ? Object.values(error.fields).join("; ") : "";
          say((error.message || "The reset failed.") + (fields ? " (" + fields + ")" : ""), false);
        })
        .catch(function () {
          say("Could not reach the server; try again.", false);
        });
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
