// Cache-aside for a database lookup: `cache.wrap` loads a user once and keeps it for 10 minutes; an update writes
// the database first, then drops the cached copy (by its tag), so the next read loads the new row.
//   npx tsx examples/cache-aside.ts   then   curl localhost:3000/users/1   and   curl -X PUT -H 'content-type: application/json' -d '{"name":"Ada L."}' localhost:3000/users/1
import express from 'express';
import { createCache, type RedisClient } from '../lib/index.js';
import { isMain, runExample } from './run.js';

interface User {
  id: string;
  name: string;
}

/** A stand-in for a database table: a Map and a 20 ms round trip, counting its reads. */
export function fakeUsersTable() {
  const rows = new Map<string, User>([
    ['1', { id: '1', name: 'Ada' }],
    ['2', { id: '2', name: 'Grace' }],
  ]);
  const table = {
    reads: 0,
    async find(id: string): Promise<User | null> {
      table.reads++;
      await new Promise((resolve) => setTimeout(resolve, 20));
      return rows.get(id) ?? null;
    },
    async update(id: string, changes: Partial<User>): Promise<User | null> {
      const row = rows.get(id);
      if (!row) return null;
      const updated = { ...row, ...changes, id };
      rows.set(id, updated);
      return updated;
    },
  };
  return table;
}

export function createApp(
  redis: RedisClient,
  options: { prefix?: string; users?: ReturnType<typeof fakeUsersTable> } = {},
) {
  const users = options.users ?? fakeUsersTable();
  const cache = createCache({ redis, prefix: options.prefix ?? 'cache' });

  const getUser = (id: string) => cache.wrap(`user:${id}`, () => users.find(id), { ttl: '10m', tags: [`user:${id}`] });

  const app = express();
  app.use(express.json());
  app.get('/users/:id', async (req, res, next) => {
    try {
      const user = await getUser(req.params.id);
      if (!user) return void res.status(404).json({ error: 'no such user' });
      res.json(user);
    } catch (error) {
      next(error);
    }
  });
  app.put('/users/:id', async (req, res, next) => {
    try {
      const updated = await users.update(req.params.id, { name: String(req.body?.name ?? '') });
      if (!updated) return void res.status(404).json({ error: 'no such user' });
      await cache.invalidateTags(`user:${req.params.id}`); // or: await cache.delete(`user:${req.params.id}`)
      res.json(updated);
    } catch (error) {
      next(error);
    }
  });
  return app;
}

if (isMain(import.meta.url)) await runExample((redis) => createApp(redis));
