// /docs: Swagger UI from /vendor (no CDN). "Authorize" keeps the token for the
// session of the tab; the control room's own token (same origin) is offered first.
const saved = localStorage.getItem("gpsd.token");
const ui = window.SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: true,
  tryItOutEnabled: true,
  onComplete: () => {
    if (saved) ui.preauthorizeApiKey("bearer", saved);
  },
});
window.ui = ui;
