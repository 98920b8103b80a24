import { isIPv4, isIPv6 } from 'node:net';

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
 * The address in `value` when it is one with a port, as some proxies write X-Forwarded-For (Azure Application
 * Gateway): `1.2.3.4:50001` → `1.2.3.4`, `[2001:db8::1]:443` and `[2001:db8::1]` → `2001:db8::1`.
 */
function withoutPort(value: string): string {
  if (value.startsWith('[')) {
    const end = value.indexOf(']');
    const rest = value.slice(end + 1);
    if (end > 0 && (rest === '' || /^:\d{1,5}$/.test(rest))) return value.slice(1, end);
    return value;
  }
  const colon = value.indexOf(':');
  if (colon > 0 && colon === value.lastIndexOf(':') && /^\d{1,5}$/.test(value.slice(colon + 1))) {
    return value.slice(0, colon);
  }
  return value;
}

/**
 * The rate-limit client for an IP address, or `undefined` when `address` is none:
 * IPv4 as is; an address with a port (`1.2.3.4:50001`, `[v6]:443`) without it; IPv4-mapped IPv6
 * (`::ffff:1.2.3.4`, `::ffff:0102:0304`, …) folded to IPv4; other IPv6 addresses grouped into their `/subnet`
 * network (one client per /56 by default, since a single subscriber usually owns a whole prefix), or in canonical
 * form when `subnet` is `false`.
 */
export function clientForIp(address: string, subnet: number | false): string | undefined {
  if (isIPv4(address)) return address;
  // Dual-stack servers see every IPv4 client this way: skip the full parse.
  if (address.startsWith('::ffff:') && isIPv4(address.slice(7))) return address.slice(7);
  const cacheKey = subnet === false ? address : `${address}/${subnet}`;
  let client = recentClients.get(cacheKey);
  if (client === undefined) {
    const bare = withoutPort(address);
    if (isIPv4(bare)) client = bare;
    else if (isIPv6(bare)) client = normaliseIPv6(bare, subnet);
    else return undefined;
    if (recentClients.size >= 10_000) recentClients.clear();
    recentClients.set(cacheKey, client);
  }
  return client;
}

/** Recently normalised IPv6 addresses: parsing is the costly part of the default key, and clients repeat. */
const recentClients = new Map<string, string>();

function normaliseIPv6(address: string, subnet: number | false): string {
  const groups = parseIPv6(address);
  if (!groups) return address; // isIPv6 accepted it: a form the parser does not know is kept as it is
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
