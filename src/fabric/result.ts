/**
 * Outcome of decoding untrusted bytes. Decoders in the fabric return this
 * instead of throwing: a bad frame from the wire is an expected event that is
 * counted and dropped, not an exception.
 */
export type Decoded<T, K extends string> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly error: K; readonly detail: string };

export function decoded<T>(value: T): { readonly ok: true; readonly value: T } {
  return { ok: true, value };
}

export function failed<K extends string>(error: K, detail: string): { readonly ok: false; readonly error: K; readonly detail: string } {
  return { ok: false, error, detail };
}
