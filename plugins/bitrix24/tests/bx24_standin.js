/* Stand-in for Bitrix24's BX24 library in the browser tests (the real one is
   https://api.bitrix24.com/api/v1/). Like the real one it talks to the portal page around the
   frame through postMessage: installFinish tells it the install is done, fitWindow asks it to
   make the frame as tall as the page. */
window.BX24 = {
  init: function (callback) { callback(); },
  installFinish: function () {
    document.documentElement.setAttribute("data-bx24-install-finished", "1");
    window.parent.postMessage({ bx24: "installFinish" }, "*");
  },
  fitWindow: function () {
    window.parent.postMessage({ bx24: "fitWindow", height: document.body.scrollHeight }, "*");
  }
};
