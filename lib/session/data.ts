/**
 * The data a session holds. Augment it to type `req.session`:
 * `declare module 'redisware' { interface SessionData { userId: string } }`.
 */
// biome-ignore lint/suspicious/noEmptyInterface: meant to be augmented by users
export interface SessionData {}
