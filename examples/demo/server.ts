// `npm run demo`: the demo app on PORT (default 3000). Without REDIS_URL it starts an embedded redis-server.
import { runExample } from '../run.js';
import { createDemoApp } from './app.js';

await runExample((redis) => createDemoApp(redis, { sessionSecret: process.env.SESSION_SECRET }));
