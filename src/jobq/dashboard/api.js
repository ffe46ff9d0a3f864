// jobq API reference (/docs): the operations of /openapi.json, rendered in the page.
"use strict";

const esc = (v) => String(v ?? "").replace(/[&<>"']/g,
  (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

fetch("/openapi.json").then((r) => r.json()).then((doc) => {
  const ops = [];
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [verb, op] of Object.entries(methods)) {
      const params = (op.parameters || []).map((p) =>
        `<li><code>${esc(p.name)}</code> (${esc(p.in)}) ${esc(p.description || "")}</li>`).join("");
      const name = op.requestBody
        ? op.requestBody.content["application/json"].schema.$ref.split("/").pop() : null;
      const body = name
        ? `<details><summary>body: ${esc(name)}</summary>
           <pre class="code">${esc(JSON.stringify(doc.components.schemas[name], null, 2))}</pre></details>` : "";
      const open = Array.isArray(op.security) && op.security.length === 0;
      ops.push(`<section class="card op"><h2><span class="verb ${esc(verb)}">${esc(verb.toUpperCase())}</span>${esc(path)}</h2>
        <p><b>${esc(op.summary || "")}</b> ${esc(op.description || "")}</p>
        ${params ? `<ul>${params}</ul>` : ""}${body}
        <p class="muted">${open ? "no token needed · " : ""}answers: ${Object.keys(op.responses).map(esc).join(", ")}</p></section>`);
    }
  }
  const auth = "<p class=\"muted\">With <code>jobq hub --auth FILE</code>, every call but <code>/health</code> needs "
    + "<code>Authorization: Bearer TOKEN</code> (401 without one, 403 when the token lacks the right).</p>";
  document.getElementById("ops").innerHTML = `<p>${esc(doc.info.description)}</p>` + auth + ops.join("");
});
