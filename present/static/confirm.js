// While a payment is being confirmed, look again every few seconds and show the page
// anew once it is applied. The page works without this: it has a "Check again" link.
(function () {
  "use strict";
  if (!document.querySelector('[data-state="confirming"]')) {
    return;
  }
  var tries = 0;
  function later(delay) {
    tries += 1;
    if (tries <= 100) {
      window.setTimeout(look, delay);
    }
  }
  function look() {
    window.fetch(window.location.href, { cache: "no-store", credentials: "same-origin" })
      .then(function (response) { return response.text(); })
      .then(function (text) {
        if (text.indexOf('data-state="confirming"') === -1) {
          window.location.replace(window.location.href);
        } else {
          later(2000);
        }
      })
      .catch(function () { later(5000); });
  }
  later(1500);
})();
