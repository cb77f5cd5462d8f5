// The few HTML pages oidc-provider renders: error pages and the device flow's user-code pages.
// Deliberately bare (they are read by device-user.ts and by people debugging, not styled), and
// supplied so oidc-provider does not print notices about its default page templates.
import type { Client, KoaContext } from "oidc-provider";
import { DEVICE_SUCCESS_MARKER } from "./device-user.js";

function escapeHtml(s: unknown): string {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(ctx: KoaContext, title: string, body: string): void {
  ctx.type = "html";
  ctx.body = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head><body>${body}</body></html>`;
}

export async function renderError(ctx: KoaContext, out: Record<string, unknown>): Promise<void> {
  const rows = Object.entries(out).map(
    ([k, v]) => `<pre><strong>${escapeHtml(k)}</strong>: ${escapeHtml(v)}</pre>`,
  );
  page(ctx, "error", `<h1>error</h1>${rows.join("")}`);
}

export async function deviceInputPage(
  ctx: KoaContext,
  form: string,
  _out: unknown,
  err?: Error & { userCode?: string },
) {
  let msg = "<p>Enter the code displayed on your device</p>";
  if (err?.name === "AbortedError") msg = '<p class="error">The sign-in request was interrupted</p>';
  else if (err?.userCode || err?.name === "NoCodeError")
    msg = '<p class="error">The code you entered is incorrect</p>';
  else if (err)
    msg = `<p class="error">There was an error processing your request: ${escapeHtml(err.message)}</p>`;
  page(
    ctx,
    "Device sign-in",
    `${msg}${form}<button type="submit" form="op.deviceInputForm">Continue</button>`,
  );
}

export async function deviceConfirmPage(
  ctx: KoaContext,
  form: string,
  client: Client,
  _info: unknown,
  userCode: string,
) {
  page(
    ctx,
    "Confirm device",
    `<p>Client <strong>${escapeHtml(client.clientId)}</strong> shows the code <code>${escapeHtml(userCode)}</code></p>` +
      `${form}<button type="submit" form="op.deviceConfirmForm">Continue</button>`,
  );
}

export async function deviceSuccessPage(ctx: KoaContext) {
  page(ctx, "Device approved", `<p data-marker="${DEVICE_SUCCESS_MARKER}">Sign-in successful.</p>`);
}
