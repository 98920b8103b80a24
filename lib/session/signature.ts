import { createHmac, randomBytes } from 'node:crypto';

/** An id as issued: 32 random bytes in base64url (43 characters), or what the `genid` option made (8 to 128). */
const idPattern = /^[A-Za-z0-9_-]{8,128}$/;
const signatureLength = 43; // base64url of a 32-byte HMAC-SHA256

/** A new session id: 256 bits from the CSPRNG, base64url. */
export function newSessionId(): string {
  return randomBytes(32).toString('base64url');
}

/** HMAC-SHA256 of `id` under `secret`, in base64url (43 characters). */
function signatureOf(id: string, secret: string): string {
  return createHmac('sha256', secret).update(id).digest('base64url');
}

/** The cookie value for `id`: `<id>.<HMAC-SHA256(secret, id) in base64url>`. */
export function signSessionId(id: string, secret: string): string {
  return `${id}.${signatureOf(id, secret)}`;
}

/**
 * Whether the signature in cookie `value` (after the id and the dot, at `start`) is `expected`, compared in constant
 * time: every character is compared, whatever differs, with no branch on the data. Only the canonical encoding
 * matches, which is the only one ever issued.
 */
function signatureMatches(value: string, start: number, expected: string): boolean {
  let difference = 0;
  for (let i = 0; i < signatureLength; i++) difference |= value.charCodeAt(start + i) ^ expected.charCodeAt(i);
  return difference === 0;
}

/** How many verified ids a verifier remembers the signatures of. */
const rememberedIds = 10_000;

/**
 * Verifies session cookies against `secrets` (the first signs, all verify). The signatures of ids that verified
 * are remembered, so a returning cookie costs a constant-time comparison instead of an HMAC per secret; an id
 * that did not verify is never remembered, so forged cookies cannot fill the memory or skip the HMAC.
 */
export function sessionCookieVerifier(secrets: readonly string[]): (value: string | undefined) => string | undefined {
  const verified = new Map<string, string[]>();
  /**
   * The session id in a cookie value, or `undefined` when the value is malformed or its signature matches none
   * of the secrets (compared in constant time). Only values of the exact shape we issue are even considered.
   */
  return function verify(value) {
    if (value === undefined) return undefined;
    const dot = value.length - signatureLength - 1;
    if (dot < 8 || dot > 128 || value[dot] !== '.') return undefined;
    const id = value.slice(0, dot);
    // A remembered id passed this check when it was first verified.
    const remembered = verified.get(id);
    if (remembered === undefined && !idPattern.test(id)) return undefined;
    const expected = remembered ?? secrets.map((secret) => signatureOf(id, secret));
    let valid = false;
    // Check every secret, so the time taken does not reveal which one matched.
    for (const signature of expected) if (signatureMatches(value, dot + 1, signature)) valid = true;
    if (!valid) return undefined;
    if (!remembered) {
      if (verified.size >= rememberedIds) verified.clear();
      verified.set(id, expected);
    }
    return id;
  };
}
