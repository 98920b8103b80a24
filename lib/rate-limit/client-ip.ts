import { isIPv4 } from 'node:net';

/**
 * Parses an IPv6 address (any notation: `::`, embedded dotted IPv4, upper case, zone id) into 8 groups,
 * or returns `undefined` when it is not one.
 */
function parseIPv6(address: string): number[] | undefined {
  const zone = address.indexOf('%');
  let text = (zone === -1 ? address : address.slice(0, zone)).toLowerCase();
  const lastColon = text.lastIndexOf(':');
  const last = text.slice(lastColon + 1);
  if (last.includes('.')) {
    // Embedded dotted IPv4 (`::ffff:1.2.3.4`): rewrite it as its two hex groups.
    if (!isIPv4(last)) return undefined;
    const [a, b, c, d] = last.split('.').map(Number);
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const readGroups = (part: string): number[] | undefined => {
    if (part === '') return [];
    const groups: number[] = [];
    for (const group of part.split(':')) {
      if (!/^[0-9a-f]{1,4}$/.test(group)) return undefined;
      groups.push(Number.parseInt(group, 16));
    }
    return groups;
  };
  const head = readGroups(halves[0]);
  const rest = halves.length === 2 ? readGroups(halves[1]) : [];
  if (!head || !rest) return undefined;
  const explicit = head.length + rest.length;
  if (halves.length === 1) return explicit === 8 ? head : undefined;
  if (explicit > 7) return undefined;
  return [...head, ...new Array<number>(8 - explicit).fill(0), ...rest];
}

/** RFC 5952 text form: lower case, no leading zeros, the longest run of two or more zero groups as `::`. */
function formatIPv6(groups: number[]): string {
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

/**
 * The rate-limit client for an IP address:
 * IPv4 as is; IPv4-mapped IPv6 (`::ffff:1.2.3.4`, `::ffff:0102:0304`, …) folded to IPv4;
 * other IPv6 addresses grouped into their `/subnet` network (one client per /56 by default, since a single
 * subscriber usually owns a whole prefix), or in canonical form when `subnet` is `false`.
 * Anything that is not an IP address is returned unchanged.
 */
export function clientForIp(address: string, subnet: number | false): string {
  if (!address.includes(':')) return address;
  // Dual-stack servers see every IPv4 client this way: skip the full parse.
  if (address.startsWith('::ffff:') && isIPv4(address.slice(7))) return address.slice(7);
  const cacheKey = subnet === false ? address : `${address}/${subnet}`;
  let client = recentClients.get(cacheKey);
  if (client === undefined) {
    client = normaliseIPv6(address, subnet);
    if (recentClients.size >= 10_000) recentClients.clear();
    recentClients.set(cacheKey, client);
  }
  return client;
}

/** Recently normalised IPv6 addresses: parsing is the costly part of the default key, and clients repeat. */
const recentClients = new Map<string, string>();

function normaliseIPv6(address: string, subnet: number | false): string {
  const groups = parseIPv6(address);
  if (!groups) return address;
  if (
    groups[0] === 0 &&
    groups[1] === 0 &&
    groups[2] === 0 &&
    groups[3] === 0 &&
    groups[4] === 0 &&
    groups[5] === 0xffff
  ) {
    return `${groups[6] >> 8}.${groups[6] & 255}.${groups[7] >> 8}.${groups[7] & 255}`;
  }
  if (subnet === false || subnet >= 128) return formatIPv6(groups);
  const masked = groups.map((group, index) => {
    const bitsBefore = index * 16;
    if (bitsBefore >= subnet) return 0;
    if (bitsBefore + 16 <= subnet) return group;
    return group & (0xffff << (16 - (subnet - bitsBefore))) & 0xffff;
  });
  return `${formatIPv6(masked)}/${subnet}`;
}
