// `npm run demo`: the demo app on PORT (default 3000) of HOST (default 127.0.0.1: this machine only; HOST=0.0.0.0
// serves every network it is on; its users' passwords are in the README). Without REDIS_URL it starts an embedded
// redis-server.
import { runExample } from '../run.js';
import { createDemoApp } from './app.js';

await runExample((redis) => createDemoApp(redis, { sessionSecret: process.env.SESSION_SECRET }));
