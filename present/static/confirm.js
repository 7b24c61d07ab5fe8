// While a payment is being confirmed or is on its way, look again in the background and
// show the page anew once that changed (applied, failed, or arrived). Without JavaScript
// the page refreshes itself every few seconds instead (its <noscript> meta refresh); it
// also has a "Check again" link. A Direct Debit's wait is looked at slowly, and without
// JavaScript not at all (pages/invoice.html says why).
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
  // Only Direct Debits on their way (3-5 working days to confirm): a look every five
  // minutes shows the confirmation soon enough, without asking every few seconds for days.
  var slow = now.replace(/data-waiting="direct-debit"/g, "").trim() === "";
  var delay = slow ? 300000 : 1500;
  function later() {
    window.setTimeout(look, delay);
    // A transfer can take days: ask less often the longer it takes, but never stop.
    delay = slow ? delay : Math.min(delay * 1.5, 15000);
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
