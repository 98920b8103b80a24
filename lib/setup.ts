// What every factory derives from its shared options, written once: its logger, its event emitter, its client and
// the bounded way it talks to Redis (each outage logged once).

import { lazyRedis } from './connection.js';
import { type Emit, type EventHook, eventEmitter, type RedisErrorEvent } from './events.js';
import { type Logger, OutageReporter, resolveLogger } from './logger.js';
import { boundedCaller, type RedisCaller } from './redis/bounded.js';
import type { RedisClient } from './redis/client.js';

/** The shared options as a factory's schema resolves them (see `commonMiddlewareOptions`). */
export interface SharedOptions {
  redis?: RedisClient;
  timeout: number;
  logger?: Logger;
  batch: boolean;
  onEvent?: EventHook;
}

/** What a factory works with. */
export interface FactoryParts {
  logger: Logger;
  /** Reports to `onEvent`; `undefined` without one (so no event is built). */
  emit: Emit | undefined;
  /** The client: the one given, or the shared default, created on first use. */
  redis: () => RedisClient;
  /** Runs commands and scripts within `timeout`, logging `outageMessage` once per outage. */
  call: RedisCaller;
}

/**
 * Derives a factory's {@link FactoryParts} from its resolved options: `source` names it in events, `outageMessage`
 * (which starts with its name, as the line logged when Redis answers again does) is logged once per outage.
 */
export function factoryParts(
  options: SharedOptions,
  source: RedisErrorEvent['source'],
  outageMessage: string,
): FactoryParts {
  const logger = resolveLogger(options.logger);
  const redis = lazyRedis(options.redis);
  const emit = eventEmitter(options.onEvent, logger);
  const outage = new OutageReporter(logger, outageMessage, (downMs) =>
    emit?.({ type: 'redis.recovered', source, downMs }),
  );
  return {
    logger,
    emit,
    redis,
    call: boundedCaller({
      client: redis,
      timeoutMs: options.timeout,
      outage,
      logger,
      batch: options.batch,
      // A limiter serves nothing of what Redis holds: it keeps counting while a cache's invalidations are applied.
      waitFor: source === 'session' || source === 'cache' ? source : undefined,
    }),
  };
}
