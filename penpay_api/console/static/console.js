// The bridge's CSRF rule (double submit): every htmx request echoes the penpay_csrf cookie in
// X-CSRF-Token. Nothing else runs in the console's pages besides htmx.
document.addEventListener("htmx:configRequest", (event) => {
  const match = document.cookie.match(/(?:^|; )penpay_csrf=([^;]*)/);
  if (match) {
    event.detail.headers["X-CSRF-Token"] = decodeURIComponent(match[1]);
  }
});
