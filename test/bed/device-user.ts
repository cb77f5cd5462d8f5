// Plays the human on the other device in the device authorization grant (RFC 8628 §3.3):
// opens the verification page, types the user code, and confirms (or aborts), over plain HTTP.
import { CookieJar } from "./http-util.js";

/** Marker the bed's device success page carries, so the driver can tell success from a re-render. */
export const DEVICE_SUCCESS_MARKER = "tokenkeeper-test-bed:device-approved";

/**
 * Approves a pending device authorization. `verificationUri` is the AS's
 * `verification_uri` (its /device page). Resolves once the AS shows its success page.
 */
export async function approveDeviceCode(verificationUri: string, userCode: string): Promise<void> {
  const { status, text } = await submitUserCode(verificationUri, userCode, { confirm: "yes" });
  if (status !== 200 || !text.includes(DEVICE_SUCCESS_MARKER)) {
    throw new Error(`device approval failed (HTTP ${status}): ${summarize(text)}`);
  }
}

/** Aborts a pending device authorization; the device's next poll gets access_denied. */
export async function denyDeviceCode(verificationUri: string, userCode: string): Promise<void> {
  const { text } = await submitUserCode(verificationUri, userCode, { abort: "yes" });
  if (!/interrupted|aborted/i.test(text)) {
    throw new Error(`device denial failed: ${summarize(text)}`);
  }
}

async function submitUserCode(
  verificationUri: string,
  userCode: string,
  extra: Record<string, string>,
): Promise<{ status: number; text: string }> {
  const jar = new CookieJar();
  // The form's xsrf value is bound to the session cookie set by this GET.
  const page = await fetch(verificationUri, { redirect: "manual" });
  jar.store(page);
  const html = await page.text();
  const xsrf = /name="xsrf" value="([^"]+)"/.exec(html)?.[1];
  if (!xsrf) throw new Error(`no xsrf field on the device verification page: ${summarize(html)}`);

  let res = await fetch(verificationUri, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", cookie: jar.header() },
    body: new URLSearchParams({ xsrf, user_code: userCode, ...extra }),
  });
  // Then through the interaction (the bed's auto-consent) and back to the device resume route.
  for (let hops = 0; hops < 10 && res.status >= 300 && res.status < 400; hops++) {
    jar.store(res);
    await res.body?.cancel();
    const location = new URL(res.headers.get("location") ?? "", verificationUri);
    res = await fetch(location, { redirect: "manual", headers: { cookie: jar.header() } });
  }
  return { status: res.status, text: await res.text() };
}

function summarize(html: string): string {
  return html
    .replace(/<style[\s\S]*?<\/style>/g, "")
    .replace(/<[^>]+>/g, " ")
    .replace(/\s+/g, " ")
    .trim()
    .slice(0, 300);
}
