import { describe, expect, it } from 'vitest';
import { newSessionId, sessionCookieVerifier, signSessionId } from '../../lib/session/signature.js';

const current = 'current-secret-current-secret-0123456789';
const previous = 'previous-secret-previous-secret-012345678';

describe('sessionCookieVerifier', () => {
  it('accepts a cookie signed with any of the secrets, again and again', () => {
    const verify = sessionCookieVerifier([current, previous]);
    const id = newSessionId();
    for (let i = 0; i < 3; i++) {
      expect(verify(signSessionId(id, current))).toBe(id);
      expect(verify(signSessionId(id, previous))).toBe(id);
    }
  });

  it('still rejects a forged signature for an id it has already verified (remembering an id trusts no new signature)', () => {
    const verify = sessionCookieVerifier([current]);
    const id = newSessionId();
    const genuine = signSessionId(id, current);
    expect(verify(genuine)).toBe(id);
    const forged = signSessionId(id, 'attacker-secret-attacker-secret-01234567');
    expect(verify(forged)).toBeUndefined();
    // One changed character of the genuine signature (not the last: its low bits are base64 padding).
    const changed = genuine[60] === 'A' ? 'B' : 'A';
    expect(verify(`${genuine.slice(0, 60)}${changed}${genuine.slice(61)}`)).toBeUndefined();
    expect(verify(genuine)).toBe(id);
  });

  it('never verifies an id signed only with a secret that was dropped from the list', () => {
    const id = newSessionId();
    const oldCookie = signSessionId(id, previous);
    expect(sessionCookieVerifier([current, previous])(oldCookie)).toBe(id);
    expect(sessionCookieVerifier([current])(oldCookie)).toBeUndefined();
  });

  it('rejects malformed values without throwing', () => {
    const verify = sessionCookieVerifier([current]);
    const id = newSessionId();
    const genuine = signSessionId(id, current);
    for (const value of [
      undefined,
      '',
      id,
      `${id}.`,
      genuine.replace('.', '!'),
      `${genuine}x`,
      genuine.slice(1),
      `${'*'.repeat(43)}.${genuine.slice(44)}`,
      `${id}.${'='.repeat(43)}`,
      'x'.repeat(10_000),
    ]) {
      expect(verify(value)).toBeUndefined();
    }
  });
});
