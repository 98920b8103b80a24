import type { Request } from 'express';
import type { Logger } from '../logger.js';
import { clientForIp } from './client-ip.js';

/**
 * The default client key: `req.ip` (so Express' `trust proxy` decides which address counts), normalised by
 * {@link clientForIp}. Warns once each when the app looks misconfigured for rate limiting by IP.
 */
export function defaultClientKey(ipv6Subnet: number | false, logger: Logger): (req: Request) => string {
  let warnedForwarded = false;
  let warnedTrustAll = false;
  let warnedNoIp = false;
  let warnedNotIp = false;
  /** `address` as a client; anything that is no IP address is one shared client, `'unknown'` (one warning). */
  const clientOf = (address: string): string => {
    const client = clientForIp(address, ipv6Subnet);
    if (client !== undefined) return client;
    if (!warnedNotIp) {
      warnedNotIp = true;
      logger.warn(
        "redisware rateLimit: the client address is no IP address, so such clients share one limit ('unknown'). Check 'trust proxy' and what your proxy writes into X-Forwarded-For, or pass a 'key' function.",
      );
    }
    return 'unknown';
  };
  return function clientIp(req: Request): string {
    const ip = req.ip;
    // Reading a property of an Express `req` is comparatively slow (it misses V8's inline caches), so the checks
    // below read `req.app` once, and the headers only while they can still lead to a warning.
    const trustProxy = !warnedForwarded || !warnedTrustAll ? req.app.get('trust proxy') : undefined;
    if (!warnedForwarded && trustProxy === false && req.headers['x-forwarded-for'] !== undefined) {
      warnedForwarded = true;
      logger.warn(
        "redisware rateLimit: requests carry X-Forwarded-For but Express' 'trust proxy' is off, so every client behind the proxy shares one limit. Set app.set('trust proxy', <your proxies>) if a proxy sits in front of the app.",
      );
    }
    if (!warnedTrustAll && trustProxy === true) {
      warnedTrustAll = true;
      logger.warn(
        "redisware rateLimit: 'trust proxy' is true, so any client can pick its own IP with X-Forwarded-For and escape the limit. Set it to the number or addresses of your proxies.",
      );
    }
    if (ip === undefined || ip === '') {
      if (!warnedNoIp) {
        warnedNoIp = true;
        logger.warn(
          "redisware rateLimit: req.ip is undefined (the socket may be closed); using the socket's address or 'unknown'. Pass a 'key' function if your server does not provide req.ip.",
        );
      }
      const socketAddress = req.socket?.remoteAddress;
      return socketAddress === undefined ? 'unknown' : clientOf(socketAddress);
    }
    return clientOf(ip);
  };
}
