// Reading (and rewriting) a form-encoded request body in front of oidc-provider, without taking
// it away from oidc-provider's own body parser.
//
// The bytes are read in paused mode and unshifted back before the stream can emit 'end', so the
// parser later sees an untouched, still-readable request. (Reading the stream to its end would
// make oidc-provider fall back to a pre-parsed body, with a warning.)
import type { IncomingMessage } from "node:http";

const LIMIT = 56 * 1024; // oidc-provider's own limit for form bodies

/**
 * Reads the whole body and puts `replace(body)` back in its place. Resolves with the original
 * body, or undefined (having read nothing) when there is no usable Content-Length: chunked
 * uploads are not peeked.
 */
async function swapBody(
  req: IncomingMessage,
  replace: (body: Buffer) => Buffer,
): Promise<Buffer | undefined> {
  const length = Number(req.headers["content-length"]);
  if (!Number.isSafeInteger(length) || length <= 0 || length > LIMIT) return undefined;
  return new Promise<Buffer | undefined>((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (result: Buffer | undefined) => {
      req.off("readable", onReadable);
      req.off("error", onFail);
      req.off("end", onFail);
      resolve(result);
    };
    const onFail = () => finish(undefined);
    function onReadable() {
      for (let chunk = req.read() as Buffer | null; chunk !== null; chunk = req.read() as Buffer | null) {
        chunks.push(chunk);
        size += chunk.length;
      }
      if (size < length) return;
      const body = Buffer.concat(chunks);
      // Synchronously, in the same tick as the last read(): the stream has not emitted 'end' yet
      // (that is scheduled with nextTick, and skipped when data is buffered again).
      const replacement = replace(body);
      if (replacement.length !== body.length) req.headers["content-length"] = String(replacement.length);
      req.unshift(replacement);
      finish(body);
    }
    req.on("readable", onReadable);
    req.once("error", onFail);
    req.once("end", onFail);
  });
}

/** The form parameters of a urlencoded request, leaving the body in place for the next reader. */
export async function peekForm(req: IncomingMessage): Promise<URLSearchParams | undefined> {
  if (!isForm(req)) return undefined;
  const body = await swapBody(req, (b) => b);
  return body && new URLSearchParams(body.toString("utf8"));
}

/** Lets `edit` change the form parameters of a urlencoded request before the next reader sees them. */
export async function editForm(req: IncomingMessage, edit: (form: URLSearchParams) => void): Promise<void> {
  if (!isForm(req)) return;
  await swapBody(req, (body) => {
    const form = new URLSearchParams(body.toString("utf8"));
    edit(form);
    return Buffer.from(form.toString(), "utf8");
  });
}

function isForm(req: IncomingMessage): boolean {
  return (req.headers["content-type"] ?? "").toLowerCase().startsWith("application/x-www-form-urlencoded");
}
