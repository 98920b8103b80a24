// One benchmark server process: builds the app for `variant` and reports its port, then its CPU use on request.
// Run by bench/run.ts through child_process.fork; the CPU it reports is this process's alone.
import type { Server } from 'node:http';
import { build, variants } from './variants.js';
import './outage-variants.js';

const [variantName, redisUrl, scenarioJson] = process.argv.slice(2);
const scenario = JSON.parse(scenarioJson) as Record<string, unknown>;
const variant = variants[variantName];
if (!variant) throw new Error(`unknown variant ${variantName}`);

const { app, close } = await build(variant, redisUrl, scenario);
let served = 0;
const server: Server = app.listen(0, '127.0.0.1', () => {
  const address = server.address() as { port: number };
  process.send?.({ type: 'listening', port: address.port });
});
server.on('request', () => {
  served++;
});
server.keepAliveTimeout = 60_000;

// The parent went away (finished or crashed): do not linger.
process.on('disconnect', () => process.exit(0));

process.on('message', async (message: { type: string }) => {
  if (message.type === 'stats') {
    process.send?.({ type: 'stats', cpu: process.cpuUsage(), served });
  } else if (message.type === 'stop') {
    server.closeAllConnections();
    server.close();
    await close();
    process.exit(0);
  }
});
