// `npm run demo`: the demo app on PORT (default 3000) of HOST (default 127.0.0.1: this machine only; HOST=0.0.0.0
// serves every network it is on). Without REDIS_URL it starts an embedded redis-server.
import { isIP } from 'node:net';
import { createRedis } from '../../lib/index.js';
import { exampleRedisUrl } from '../run.js';
import { createDemoApp } from './app.js';

const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT ?? 3000);

const redisUrl = await exampleRedisUrl();
const redis = createRedis(redisUrl.url);
const app = createDemoApp(redis, { sessionSecret: process.env.SESSION_SECRET });

const server = app.listen(port, host, () => {
  const { address, port: listening } = server.address() as { address: string; port: number };
  const shown = isIP(address) === 6 ? `[${address}]` : address;
  console.log(`listening on http://${shown}:${listening}/ (Ctrl-C to stop)`);
  if (address !== '127.0.0.1' && address !== '::1') {
    console.log(`HOST=${host}: other machines can reach the demo; its users' passwords are in the README`);
  } else {
    console.log('only this machine can reach it (set HOST, e.g. HOST=0.0.0.0, to serve other machines)');
  }
});
server.on('error', async (error) => {
  console.error(`cannot listen on ${host}:${port}: ${error.message}`);
  await stop(1);
});

let stopping = false;
async function stop(code = 0): Promise<void> {
  if (stopping) return;
  stopping = true;
  server.closeAllConnections();
  server.close();
  await redis.quit().catch(() => redis.disconnect());
  await redisUrl.stop();
  process.exit(code);
}
process.once('SIGINT', () => void stop());
process.once('SIGTERM', () => void stop());
