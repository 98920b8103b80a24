// Waiting in tests for something that happens in the background (a held write applied, a connection back).

/** Resolves with the ms waited once `condition()` holds (checked every 10 ms), or rejects after `ms`. */
export async function until(condition: () => boolean | Promise<boolean>, ms = 5_000): Promise<number> {
  const started = Date.now();
  while (!(await condition())) {
    if (Date.now() - started > ms) throw new Error(`not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return Date.now() - started;
}

/** {@link until}, the limit first: `await within(1_000, async () => …)`. */
export const within = (ms: number, check: () => boolean | Promise<boolean>): Promise<number> => until(check, ms);
