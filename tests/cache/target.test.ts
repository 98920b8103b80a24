// Where a request was sent, as keys and invalidation see it: authorities as RFC 3986 has them, one canonical query,
// and one form for every spelling Express routes to the same handler.
import { describe, expect, it } from 'vitest';
import { canonicalQuery, invalidationUrl, invalidationUrlOf, parseAuthority } from '../../lib/cache/target.js';

describe('parseAuthority', () => {
  it('accepts reg-names, IPv4, IPv6 and IPvFuture literals, with or without a port; lower-cases the host', () => {
    expect(parseAuthority('Shop.Example')).toEqual({ host: 'shop.example', port: '' });
    expect(parseAuthority('shop.example:08080')).toEqual({ host: 'shop.example', port: '8080' });
    expect(parseAuthority('shop.example:')).toEqual({ host: 'shop.example', port: '' });
    expect(parseAuthority('192.0.2.1:80')).toEqual({ host: '192.0.2.1', port: '80' });
    expect(parseAuthority('[2001:DB8::1]:443')).toEqual({ host: '[2001:db8::1]', port: '443' });
    expect(parseAuthority('[v1.fe80::a+en1]')).toEqual({ host: '[v1.fe80::a+en1]', port: '' });
    expect(parseAuthority("a-b_c~d!$&'()*+,;=e.example")).toBeDefined();
    expect(parseAuthority('ex%41mple.com')).toEqual({ host: 'ex%41mple.com', port: '' });
  });

  it.each([
    '',
    ':80',
    'user@host',
    'host/path',
    'host?query',
    'host#fragment',
    'host name',
    'host:port',
    'host:65536',
    'host:1:2',
    '[::1',
    '[::1]x',
    '[not-an-address]',
    'exa%mple.com',
    'a'.repeat(256),
    'é.example',
    'host\r\nX-Injected: 1',
  ])('refuses %j', (value) => {
    expect(parseAuthority(value)).toBeUndefined();
  });
});

describe('canonicalQuery', () => {
  it('sorts plain parameters by name', () => {
    expect(canonicalQuery('b=2&a=1')).toBe('a=1&b=2');
    expect(canonicalQuery('b&a=')).toBe('a=&b');
    expect(canonicalQuery('')).toBe('');
  });

  it('keeps as sent what a parser could read in another order or as other bytes', () => {
    for (const query of ['id=3&id=1', 'id[]=666&id=1', 'id=1&id[]=666', 'a.b=1&a=2', '%61=2&a=1', 'b=1&a+b=2']) {
      expect(canonicalQuery(query), query).toBe(query);
    }
    // Values are never decoded: invalid UTF-8 and its replacement character stay apart, as do + and %20.
    expect(canonicalQuery('q=%FF')).not.toBe(canonicalQuery('q=%EF%BF%BD'));
    expect(canonicalQuery('q=a+b')).not.toBe(canonicalQuery('q=a%20b'));
  });
});

describe('invalidationUrl', () => {
  it('is one URL for every spelling Express routes to one handler', () => {
    const url = invalidationUrl('/posts/1', '');
    for (const spelling of ['/POSTS/1', '/posts/1/', '/Posts/1?', '/posts/%31', '/posts/1//']) {
      expect(invalidationUrlOf(spelling), spelling).toBe(url);
    }
  });

  it('reads a request target in absolute form by its path, as Express routes it', () => {
    expect(invalidationUrlOf('http://shop.example/Posts/1/?b=2&a=1')).toBe(invalidationUrlOf('/posts/1?a=1&b=2'));
  });

  it('keeps what Express routes elsewhere apart: another path, an encoded slash, another query', () => {
    const url = invalidationUrlOf('/posts/1');
    for (const other of ['/posts/2', '/posts%2F1', '/posts/1?page=2', '/'])
      expect(invalidationUrlOf(other)).not.toBe(url);
    expect(invalidationUrlOf('/a?b=2&a=1')).toBe(invalidationUrlOf('/A/?a=1&b=2'));
  });
});
