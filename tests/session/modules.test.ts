// The session code stays readable: small modules, and imports that go one way (no cycle, not even of types).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const sessionDir = join(import.meta.dirname, '../../lib/session');
const modules = readdirSync(sessionDir).filter((file) => file.endsWith('.ts'));
const source = (file: string) => readFileSync(join(sessionDir, file), 'utf8');

/** The modules of lib/session/ that `file` imports (type-only imports included). */
function importsOf(file: string): string[] {
  const found = [...source(file).matchAll(/from '\.\/([\w-]+)\.js'/g)].map((match) => `${match[1]}.ts`);
  return [...new Set(found)];
}

/** An import cycle among `modules`, as the files along it, or `undefined`. */
function findCycle(): string[] | undefined {
  const done = new Set<string>();
  const walk = (file: string, path: string[]): string[] | undefined => {
    if (path.includes(file)) return [...path.slice(path.indexOf(file)), file];
    if (done.has(file)) return undefined;
    for (const imported of importsOf(file)) {
      const cycle = walk(imported, [...path, file]);
      if (cycle) return cycle;
    }
    done.add(file);
    return undefined;
  };
  for (const file of modules) {
    const cycle = walk(file, []);
    if (cycle) return cycle;
  }
  return undefined;
}

describe('the session modules', () => {
  it('are each at most 400 lines', () => {
    const long = modules.filter((file) => source(file).split('\n').length > 400);
    expect(long).toEqual([]);
  });

  it('import one another one way only: the session object and its storage never import each other', () => {
    expect(importsOf('model.ts')).not.toContain('storage.ts');
    expect(importsOf('storage.ts')).not.toContain('model.ts');
    expect(findCycle()).toBeUndefined();
  });
});
