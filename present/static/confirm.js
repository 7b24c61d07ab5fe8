// While a payment is being confirmed or is on its way, look again in the background and
// show the page anew once that changed (applied, failed, or arrived). Without JavaScript
// the page refreshes itself every few seconds instead (its <noscript> meta refresh); it
// also has a "Check again" link.
(function () {
  "use strict";
  function waiting(html) {
    var found = html.match(/data-waiting="[^"]*"/g);
    return found ? found.join(" ") : "";
  }
  var now = waiting(document.documentElement.outerHTML);
  if (!now) {
    return;
  }
  var delay = 1500;
  function later() {
    window.setTimeout(look, delay);
    // A transfer can take days: ask less often the longer it takes, but never stop.
    delay = Math.min(delay * 1.5, 15000);
  }
  function look() {
    window.fetch(window.location.href, { cache: "no-store", credentials: "same-origin" })
      .then(function (response) { return response.text(); })
      .then(function (text) {
        if (waiting(text) !== now) {
          window.location.replace(window.location.href);
        } else {
          later();
        }
      })
      .catch(later);
  }
  later();
})();
