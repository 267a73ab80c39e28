// Swagger UI for the bridge's own /openapi.json. Same origin: "Try it out" travels with the
// browser's session cookie, so a state-changing request echoes the penpay_csrf cookie in
// X-CSRF-Token as the bridge requires. Nothing is fetched from elsewhere (no validator badge).
window.addEventListener("DOMContentLoaded", () => {
  window.SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    requestInterceptor: (request) => {
      const match = document.cookie.match(/(?:^|; )penpay_csrf=([^;]*)/);
      if (match) {
        request.headers["X-CSRF-Token"] = decodeURIComponent(match[1]);
      }
      return request;
    },
  });
});
