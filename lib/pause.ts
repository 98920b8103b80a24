/** Resolves after `ms` milliseconds (for bounded polling and backoff). */
export const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
