// A failed Kubernetes API call, said the way the server said it. Kept apart from the client
// library (no import of it) so that code which only reads errors does not load its ~800 files.
import { VeilError, errorMessage } from '../../util/errors.js';

/** The HTTP status of a failed API call (the client's ApiException, or a watch's error), if any. */
export function apiStatusCode(e: unknown): number | undefined {
  const x = e as { code?: unknown; statusCode?: unknown };
  return typeof x?.code === 'number' ? x.code : typeof x?.statusCode === 'number' ? x.statusCode : undefined;
}

/** The API server's own message for a failed call (its Status.message), else the error's. */
export function apiErrorMessage(e: unknown): string {
  const body = (e as { body?: unknown })?.body;
  let parsed: unknown = body;
  if (typeof body === 'string') { try { parsed = JSON.parse(body); } catch { /* not JSON */ } }
  const msg = (parsed as { message?: unknown } | undefined)?.message;
  const code = apiStatusCode(e);
  if (typeof msg === 'string') return code ? `${msg} (HTTP ${code})` : msg;
  return errorMessage(e).split('\n')[0]!;
}

/** A failed API call as a VeilError that says what was asked and what the server said. */
export function apiError(what: string, e: unknown, hint?: string): VeilError {
  const code = apiStatusCode(e);
  const h = hint ?? (apiErrorMessage(e).includes('denied request') && /ValidatingAdmissionPolicy '/.test(apiErrorMessage(e)) ? 'an admission policy refused the write; the message says which policy and why'
    : code === 403 ? 'the service account lacks this right: re-apply the ClusterRole (veil install --kubernetes)'
    : code === 401 ? 'the credentials were refused: check the kubeconfig user or the service account token'
      : code === undefined ? 'check that the API server is reachable from here' : undefined);
  return new VeilError(code === 404 ? 'NOT_FOUND' : code === 409 ? 'CONFLICT' : 'KUBE_API', `${what}: ${apiErrorMessage(e)}`, h);
}
