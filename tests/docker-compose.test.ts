import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

describe('docker-compose.yml', () => {
  const compose = readFileSync(join(import.meta.dirname, '..', 'docker-compose.yml'), 'utf8');

  it('runs a Redis 7 service on 6379', () => {
    expect(compose).toMatch(/^services:\s*$/m);
    expect(compose).toMatch(/^ {2}redis:\s*$/m);
    expect(compose).toMatch(/image: redis:7\b/);
    expect(compose).toMatch(/- "6379:6379"/);
  });

  it('has a healthcheck that pings Redis', () => {
    expect(compose).toMatch(/healthcheck:\s*\n\s+test: \[.*"redis-cli".*"ping"\]/);
  });
});
