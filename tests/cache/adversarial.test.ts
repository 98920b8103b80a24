// Every parser the cache runs on request or response header values stays linear: a 16 KB hostile value — runs of
// spaces, commas, quotes, backslashes, and the fragments each grammar is built of — is read in under 5 ms.
import type { Request } from 'express';
import { describe, expect, it } from 'vitest';
import { answerFrom } from '../../lib/cache/answer.js';
import {
  deltaSeconds,
  parseAge,
  parseCacheControl,
  parseHttpDate,
  parseTargetedCacheControl,
  qualifiedFields,
  requestDirectives,
} from '../../lib/cache/directives.js';
import { computeEtag, newVersion, type StoredResponse } from '../../lib/cache/entry.js';
import { freshUntil, initialAge, statedLifetime } from '../../lib/cache/freshness.js';
import {
  acceptsEncoding,
  entityTags,
  forbidsStoring,
  ifNoneMatchMatches,
  notModified,
  storedHeaderFilter,
  varyNames,
  varyValue,
} from '../../lib/cache/http.js';
import { canonicalQuery, invalidationUrlOf, parseAuthority } from '../../lib/cache/target.js';

const size = 16 * 1024;
const fill = (unit: string) => unit.repeat(Math.ceil(size / unit.length)).slice(0, size);

/** Hostile values: runs of one character, and repeated fragments of the grammars these parsers read. */
const hostile: [string, string][] = [
  ['spaces', fill(' ')],
  ['tabs', fill('\t')],
  ['commas', fill(',')],
  ['comma-spaces', fill(', ')],
  ['quotes', fill('"')],
  ['backslashes', fill('\\')],
  ['quoted backslashes', `"${fill('\\"')}`],
  ['equals', fill('=')],
  ['a, then spaces, then a', `a${' '.repeat(size - 2)}a`],
  ['spaces around commas', fill(' , ')],
  ['open quoted arguments', fill('a="')],
  ['directives', fill('max-age=1, ')],
  ['qualified private', fill('private="x, ')],
  ['entity tags', fill('W/"a", ')],
  ['unclosed entity tags', fill('W/"')],
  ['semicolons', fill(';q=0.5,')],
  ['structured items', fill('a=?1;b=2,')],
  ['percent signs', fill('%')],
  ['percent escapes', fill('%2F')],
  ['brackets', fill('[')],
  ['colons', fill(':')],
  ['dates', fill('Mon, 01 Jan 2024 00:00:00 GMT ')],
  ['digits', fill('9')],
  ['non-ASCII', fill('é𝄞')],
];

const entry: StoredResponse = {
  status: 200,
  headers: [['Content-Type', 'text/plain']],
  body: Buffer.alloc(64 * 1024, 'x'),
  storedAt: Date.now(),
  freshUntil: Date.now() + 60_000,
  etag: computeEtag(Buffer.from('x')),
  version: newVersion(),
};

/** Each parser, given one hostile value as it would meet it. */
const parsers: [string, (value: string) => unknown][] = [
  ['Vary value (request header)', (value) => varyValue({ 'accept-language': value }, 'accept-language')],
  ['Vary names (response header)', (value) => varyNames([value, value])],
  ['Accept-Encoding', (value) => acceptsEncoding(value)],
  ['Cache-Control', (value) => parseCacheControl([value, value])],
  ['request Cache-Control', (value) => requestDirectives(value)],
  ['CDN-Cache-Control', (value) => parseTargetedCacheControl([value])],
  ['Cache-Control in ttl mode', (value) => forbidsStoring(value)],
  [
    'freshness in ttl mode',
    (value) =>
      freshUntil(
        [
          ['Cache-Control', value],
          ['Expires', value],
          ['Date', value],
          ['Age', value],
        ],
        Date.now(),
        60_000,
      ),
  ],
  ['stated lifetime and age', (value) => [statedLifetime([['Cache-Control', value]]), initialAge([['Age', value]], 0)]],
  ['qualified fields', (value) => qualifiedFields(value)],
  ['delta-seconds and Age', (value) => [deltaSeconds(value), parseAge([value])]],
  ['HTTP-date', (value) => parseHttpDate(value)],
  ['If-None-Match', (value) => [entityTags(value), ifNoneMatchMatches(value, '"abc"')]],
  [
    'If-Modified-Since',
    (value) => notModified({ 'if-modified-since': value }, undefined, 'Mon, 01 Jan 2024 00:00:00 GMT'),
  ],
  ['Connection', (value) => storedHeaderFilter(value)('x-header')],
  ['Host', (value) => parseAuthority(value)],
  ['query', (value) => canonicalQuery(value)],
  ['path for invalidation', (value) => invalidationUrlOf(`/${value}`)],
  [
    'Range and If-Range',
    (value) =>
      answerFrom(
        { method: 'GET', headers: { range: `bytes=${value}`, 'if-range': value } } as unknown as Request,
        entry,
        'HIT',
        false,
      ),
  ],
];

/** The fastest of three runs, in ms: what the parser itself costs, without a pause of the collector. */
function fastest(run: () => unknown): number {
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 3; i++) {
    const started = performance.now();
    run();
    best = Math.min(best, performance.now() - started);
  }
  return best;
}

describe('header parsers on 16 KB hostile values', () => {
  it.each(parsers)('%s stays under 5 ms for every hostile value', (_name, parse) => {
    for (const [shape, value] of hostile) {
      expect(
        fastest(() => parse(value)),
        shape,
      ).toBeLessThan(5);
    }
  });
});
