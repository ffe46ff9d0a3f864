// jobq API docs (/docs): Swagger UI (vendored, served by the hub) on the hub's /openapi.json,
// with "Try it out" against this same origin. No inline script (the hub's CSP), no validator
// badge (it would call another origin), and the dashboard's token of this tab, if any, filled in.
"use strict";

const TOKEN_KEY = "jobq.token";

window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger",
  deepLinking: true,
  validatorUrl: null,
  tryItOutEnabled: true,
  displayRequestDuration: true,
  defaultModelsExpandDepth: 0,
  // State-changing calls say they are JSON: the hub refuses any other type (CSRF).
  requestInterceptor: (req) => {
    const method = (req.method || "GET").toUpperCase();
    if (method !== "GET" && method !== "HEAD" && !req.headers["Content-Type"]) {
      req.headers["Content-Type"] = "application/json";
    }
    return req;
  },
  onComplete: () => {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) window.ui.preauthorizeApiKey("bearer", token);
  },
});
