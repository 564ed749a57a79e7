/* callgate app pages: fit the Bitrix24 frame, finish the install. Served by the gateway;
   the pages allow no inline script (Content-Security-Policy). Works without it, too. */
(function () {
  "use strict";
  function onBx24(callback) {
    if (window.BX24 && typeof window.BX24.init === "function") {
      window.BX24.init(callback);
    }
  }
  document.addEventListener("DOMContentLoaded", function () {
    var copies = document.querySelectorAll("input.copy");
    Array.prototype.forEach.call(copies, function (input) {
      input.addEventListener("focus", function () { input.select(); });
    });
    onBx24(function () {
      if (document.querySelector("[data-install-finish]")) {
        window.BX24.installFinish();
      }
      if (typeof window.BX24.fitWindow === "function") {
        window.BX24.fitWindow();
      }
    });
  });
})();
