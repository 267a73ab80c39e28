// Swagger UI for the bridge's own /openapi.json (same origin: "Try it out" uses the session cookie).
window.addEventListener("DOMContentLoaded", () => {
  window.SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
});
