import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** Loads an optional peer dependency, or throws saying which package to install and for what. */
export function optionalPeer<T>(name: string, forWhat: string): T {
  try {
    return require(name) as T;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw error;
    throw new Error(`redisware ${forWhat} needs the package '${name}': npm install ${name}`);
  }
}
