// The session object and its storage reach each other one way only (through a named interface).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const sessionDir = join(import.meta.dirname, '../../lib/session');
const source = (file: string) => readFileSync(join(sessionDir, file), 'utf8');

/** The modules of lib/session/ that `file` imports (type-only imports included). */
function importsOf(file: string): string[] {
  const found = [...source(file).matchAll(/from '\.\/([\w-]+)\.js'/g)].map((match) => `${match[1]}.ts`);
  return [...new Set(found)];
}

describe('the session modules', () => {
  // Every module's size and every import cycle in lib/ are checked by tests/modules.test.ts.
  it('import one another one way only: the session object and its storage never import each other', () => {
    expect(importsOf('model.ts')).not.toContain('storage.ts');
    expect(importsOf('storage.ts')).not.toContain('model.ts');
  });
});
