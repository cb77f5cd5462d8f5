/**
 * Watching a response body end. The SDK transports read response bodies themselves and say
 * nothing when a stream that should have carried an answer ends without one (a dropped
 * connection, a server that died mid-stream, an event it could not parse). The proxy wraps each
 * body it hands them so that it learns exactly when that stream ended, and how.
 */

/** Called once: with no error when the body ended normally, with the error when it broke or was cancelled. */
export type BodyEnd = (error?: unknown) => void;

/**
 * The same response with a body that reports its end. Chunks pass through untouched, one read
 * ahead at most (pull-based), so memory stays bounded by the consumer's pace.
 */
export function watchBody(response: Response, onEnd: BodyEnd): Response {
  const source = response.body;
  // A Response with these statuses cannot be rebuilt with a body.
  const bodiless = response.status === 204 || response.status === 205 || response.status === 304;
  if (!source || bodiless) {
    onEnd();
    return response;
  }
  const reader = source.getReader();
  let ended = false;
  const finish = (error?: unknown) => {
    if (ended) return;
    ended = true;
    onEnd(error);
  };
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      let chunk: Awaited<ReturnType<typeof reader.read>>;
      try {
        chunk = await reader.read();
      } catch (error) {
        controller.error(error);
        finish(error ?? new Error("the response stream failed"));
        return;
      }
      if (chunk.done) {
        controller.close();
        finish();
      } else {
        controller.enqueue(chunk.value);
      }
    },
    cancel(reason) {
      finish(reason ?? new Error("the response stream was cancelled"));
      return reader.cancel(reason);
    },
  });
  return new Response(body, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}
